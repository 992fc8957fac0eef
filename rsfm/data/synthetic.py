"""The embedded default data: a seeded, georeferenced synthetic world of multi-sensor scenes.

Every scene is a land-cover map drawn at one fine grid (the greatest common divisor of all
sensor GSDs, 2 m by default) from smooth random fields, a meandering river with riparian
wetland, a road with settlements along it and rectangular crop parcels. Per-pixel variability
comes from three smooth fields (brightness ``b``, class condition ``u``, moisture ``v``; see
:mod:`rsfm.data.spectra`). Each sensor is rendered over the SAME footprint at its own GSD by
area-averaging the fine scene, so sensors are co-registered and physically consistent; optical
bands coarser than the product grid (Sentinel-2 20/60 m bands) are rendered at their native
GSD and nearest-upsampled, like a resampled L1C stack.

On disk (``ensure_synthetic_world``)::

    <root>/manifest.json             config, seed, version, classes, sensors, per-scene files
    <root>/scene_000/<sensor>.tif    one GeoTIFF per sensor, written like the real product
    <root>/scene_000/labels.tif      uint8 class ids at ``labels_gsd_m`` (10 m), nodata 255

Scenes sit at real places in UTM zones 32N/33N (EPSG:32632/32633), north-up, origins on
multiples of 60 m so 10/20/30/60 m grids nest. Same config -> bit-identical pixels.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine
from tqdm.auto import tqdm

from rsfm.data import landscape, spectra
from rsfm.data.spectra import CLASS_COLORS, CLASS_NAMES, NUM_CLASSES
from rsfm.data.spectra import LandCover as LandCover  # re-exported
from rsfm.sensors import Sensor, get_sensor

GENERATOR_VERSION = "1"
DEFAULT_SENSORS = ("sentinel2_l1c", "sentinel1_grd", "landsat8_sr", "naip")
LABEL_NODATA = 255
STALE_TEMP_SECONDS = 6 * 3600
MAX_FINE_PIXELS = 8192
GENERATION_THREADS = 2

# Real places (UTM easting/northing of the scene's north-west corner, snapped to 60 m).
LOCATIONS: tuple[tuple[str, str, float, float], ...] = (
    ("Spreewald, DE", "EPSG:32633", 431100.0, 5744820.0),
    ("Lake Constance, DE", "EPSG:32632", 522540.0, 5277420.0),
    ("Mueritz, DE", "EPSG:32633", 350580.0, 5924700.0),
    ("Upper Rhine, FR", "EPSG:32632", 407820.0, 5383740.0),
    ("Seewinkel, AT", "EPSG:32633", 638640.0, 5290200.0),
    ("Lueneburg Heath, DE", "EPSG:32632", 573540.0, 5889540.0),
    ("Lobau, AT", "EPSG:32633", 611520.0, 5337420.0),
    ("Po valley, IT", "EPSG:32632", 578640.0, 4997880.0),
    ("Balaton, HU", "EPSG:32633", 705840.0, 5192040.0),
    ("Oder valley, DE", "EPSG:32633", 459360.0, 5827920.0),
)
LOCATION_REPEAT_SHIFT_M = 12_000.0  # scenes beyond the table move south by this per cycle


@dataclass(frozen=True)
class ProductEncoding:
    """How a product stores physical values: ``physical = stored * scale + offset``."""

    dtype: str
    nodata: float | None
    scale: float = 1.0
    offset: float = 0.0
    stored_range: tuple[float, float] | None = None
    level: str = "surface reflectance"


PRODUCT_ENCODINGS: dict[str, ProductEncoding] = {
    "sentinel2_l1c": ProductEncoding("uint16", 0, 1e-4, 0.0, (1, 65535), "TOA reflectance"),
    "sentinel2_l2a": ProductEncoding("uint16", 0, 1e-4, 0.0, (1, 65535)),
    "landsat8_sr": ProductEncoding("int16", -9999, 1e-4, 0.0, (-2000, 32767)),
    "naip": ProductEncoding("uint8", None, 1 / 450, -10 / 450, (0, 255), "digital number"),
    "sentinel1_grd": ProductEncoding("float32", float("nan"), level="sigma0 (dB)"),
    "enmap": ProductEncoding("int16", -32768, 1e-4, 0.0, (-2000, 32767)),
    "neon_aop": ProductEncoding("int16", -9999, 1e-4, 0.0, (-2000, 32767)),
}
FLOAT_ENCODING = ProductEncoding("float32", float("nan"), level="physical units")
OPTICAL_NOISE = 0.002  # reflectance noise std (order of Sentinel-2 / OLI noise-equivalent)
THERMAL_NOISE_K = 0.1


@dataclass
class SyntheticWorldConfig:
    """What to generate. Hashing it names the cache directory.

    Attributes:
        seed: Master seed; scene ``i`` uses ``SeedSequence([seed, i])``.
        n_scenes: Number of scenes.
        scene_size_m: Side of each square scene (a multiple of every GSD).
        sensors: Registry names of the sensors to render.
        gsd_m: Per-sensor GSD overrides (default: NAIP at 2 m so files stay small).
        labels_gsd_m: Grid of ``labels.tif`` (majority of the fine labels per cell).
        nodata_wedge: Blank a swath-edge wedge in the last scene's Sentinel-2 rasters.
        sar_looks: Equivalent number of looks of the SAR speckle.
    """

    seed: int = 0
    n_scenes: int = 8
    scene_size_m: float = 1920.0
    sensors: tuple[str, ...] = DEFAULT_SENSORS
    gsd_m: dict[str, float] = field(default_factory=lambda: {"naip": 2.0})
    labels_gsd_m: float = 10.0
    nodata_wedge: bool = True
    sar_looks: float = 4.0

    def __post_init__(self) -> None:
        self.sensors = tuple(get_sensor(name).name for name in self.sensors)
        self.gsd_m = {get_sensor(k).name: float(v) for k, v in self.gsd_m.items()}
        if self.n_scenes < 1:
            raise ValueError(f"n_scenes must be >= 1, got {self.n_scenes}")
        for gsd in (*self.all_gsds(), self.labels_gsd_m):
            if not _is_multiple(self.scene_size_m, gsd):
                raise ValueError(f"scene_size_m={self.scene_size_m} is not a multiple of GSD {gsd}")
        if self.scene_size_m / self.fine_gsd_m() > MAX_FINE_PIXELS:
            raise ValueError(
                f"the fine grid ({self.fine_gsd_m()} m, the GCD of all GSDs) would be "
                f"{self.scene_size_m / self.fine_gsd_m():.0f} px wide; pick GSDs with a larger GCD"
            )

    def sensor_gsd(self, sensor: str) -> float:
        """The product grid GSD of a sensor (override or the sensor's finest band)."""
        name = get_sensor(sensor).name
        return self.gsd_m.get(name, get_sensor(name).gsd)

    def all_gsds(self) -> list[float]:
        """Product GSDs of all configured sensors."""
        return [self.sensor_gsd(s) for s in self.sensors]

    def fine_gsd_m(self) -> float:
        """The fine grid the scenes are drawn on: the GCD of all GSDs (to the centimetre)."""
        centimetres = [round(g * 100) for g in (*self.all_gsds(), self.labels_gsd_m)]
        return math.gcd(*centimetres) / 100.0

    def to_dict(self) -> dict:
        """JSON-ready copy."""
        data = asdict(self)
        data["sensors"] = list(self.sensors)
        data["gsd_m"] = dict(sorted(self.gsd_m.items()))
        return data

    def config_hash(self) -> str:
        """Short hash of the config and generator version (the cache directory name)."""
        payload = json.dumps(
            {"config": self.to_dict(), "version": GENERATOR_VERSION}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _is_multiple(value: float, step: float) -> bool:
    ratio = value / step
    return step > 0 and abs(ratio - round(ratio)) < 1e-6


@dataclass
class Scene:
    """One scene on its fine grid.

    Attributes:
        index: Scene number; ``name`` is ``scene_<index:03d>``.
        location: Place name.
        crs: CRS as ``EPSG:<code>``.
        west: Easting of the west edge (m).
        north: Northing of the north edge (m).
        size_m: Side of the square footprint (m).
        fine_gsd_m: GSD of ``labels`` and ``fields``.
        labels: uint8 [H, W] class ids.
        fields: float32 [3, H, W] variability fields b, u, v (~N(0, 1)).
        seed: Seed entropy of this scene (sensors draw noise from it).
        thermal_offset_k: Scene-wide temperature offset (weather, time of day).
    """

    index: int
    location: str
    crs: str
    west: float
    north: float
    size_m: float
    fine_gsd_m: float
    labels: np.ndarray
    fields: np.ndarray
    seed: int
    thermal_offset_k: float = 0.0
    _features: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    @property
    def name(self) -> str:
        """Folder name ``scene_000``."""
        return f"scene_{self.index:03d}"

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the scene CRS."""
        return (self.west, self.north - self.size_m, self.west + self.size_m, self.north)

    def transform(self, gsd_m: float) -> Affine:
        """North-up affine transform of the grid at ``gsd_m``."""
        return Affine(gsd_m, 0.0, self.west, 0.0, -gsd_m, self.north)

    def factor(self, gsd_m: float) -> int:
        """How many fine pixels one ``gsd_m`` pixel spans per side."""
        if not _is_multiple(gsd_m, self.fine_gsd_m) or not _is_multiple(self.size_m, gsd_m):
            raise ValueError(
                f"GSD {gsd_m} m is not a multiple of the scene's fine grid ({self.fine_gsd_m} m) "
                f"or does not divide its {self.size_m} m footprint"
            )
        return round(gsd_m / self.fine_gsd_m)

    def rng(self, *keys: int) -> np.random.Generator:
        """A generator for a named stream of this scene (independent of other streams)."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.index, *keys]))


def generate_scene(config: SyntheticWorldConfig, index: int) -> Scene:
    """Draw scene ``index`` of a world (label map and variability fields) on its fine grid."""
    gsd = config.fine_gsd_m()
    pixels = round(config.scene_size_m / gsd)
    location, crs, west, north = LOCATIONS[index % len(LOCATIONS)]
    north -= (index // len(LOCATIONS)) * LOCATION_REPEAT_SHIFT_M
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, index]))
    labels = landscape.draw_label_map(rng, (pixels, pixels), gsd)
    fields = landscape.draw_variability_fields(rng, labels, gsd)
    thermal = float(rng.normal(0.0, 3.0))
    size = config.scene_size_m
    return Scene(index, location, crs, west, north, size, gsd, labels, fields, config.seed, thermal)


def scene_from_labels(
    labels: np.ndarray, gsd_m: float, seed: int = 0, crs: str = "EPSG:32633"
) -> Scene:
    """Wrap a square label map as a scene (fields drawn from ``seed``).

    Args:
        labels: Integer class ids [H, W] (values in ``LandCover``).
        gsd_m: Pixel size of ``labels`` (m).
        seed: Seed of the variability fields and sensor noise.
        crs: CRS of the (placeholder) location.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[0] != labels.shape[1]:
        raise ValueError(f"labels must be a square [H, W] map, got shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"labels must hold class ids 0..{NUM_CLASSES - 1}")
    labels = labels.astype(np.uint8)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    _, _, west, north = LOCATIONS[0]
    fields = landscape.draw_variability_fields(rng, labels, gsd_m)
    return Scene(
        0, "custom", crs, west, north, labels.shape[0] * gsd_m, gsd_m, labels, fields, seed
    )


# ----------------------------------------------------------------------------- rendering


def render_labels(scene: Scene, gsd_m: float) -> np.ndarray:
    """Majority class per ``gsd_m`` cell (ties go to the lower class id): uint8 [h, w]."""
    factor = scene.factor(gsd_m)
    size = scene.labels.shape[0] // factor
    if factor == 1:
        return scene.labels.copy()
    fractions = _features(scene, factor)[:, :NUM_CLASSES]
    return np.argmax(fractions, axis=1).astype(np.uint8).reshape(size, size)


def _features(scene: Scene, factor: int) -> np.ndarray:
    """Class-mode features of a scene at ``factor`` (cached on the scene)."""
    if factor not in scene._features:
        scene._features[factor] = spectra.class_mode_features(scene.labels, scene.fields, factor)
    return scene._features[factor]


def _band_gsd(band_gsd: float, grid_gsd: float, scene: Scene) -> float:
    native = max(band_gsd, grid_gsd)
    nests = _is_multiple(native, grid_gsd) and _is_multiple(scene.size_m, native)
    return native if nests else grid_gsd


@lru_cache(maxsize=64)
def _band_matrices(sensor: Sensor, toa: bool | None) -> tuple[np.ndarray, np.ndarray]:
    """Cached optical and thermal class-mode band matrices of a sensor."""
    return spectra.optical_band_matrix(sensor, toa), spectra.thermal_band_matrix(sensor)


def render_sensor(
    scene: Scene | np.ndarray,
    sensor: str | Sensor,
    gsd_m: float | None = None,
    *,
    label_gsd_m: float | None = None,
    seed: int = 0,
    noise: bool = True,
    sar_looks: float = 4.0,
    toa: bool | None = None,
) -> np.ndarray:
    """Simulate one sensor over a scene (or a bare label map) in physical units.

    Args:
        scene: A :class:`Scene`, or a label map [H, W] of class ids.
        sensor: Registry name or any :class:`~rsfm.sensors.Sensor` (any band table).
        gsd_m: Output grid GSD (default: the sensor's finest band).
        label_gsd_m: GSD of a bare label map (default: ``gsd_m``, i.e. same grid).
        seed: Seed for the fields of a bare label map.
        noise: Add sensor noise (optical/thermal) and speckle (SAR).
        sar_looks: Equivalent number of looks of the speckle.
        toa: Top-of-atmosphere optical bands (default: for Level-1C sensors).

    Returns:
        float32 [C, h, w]: reflectance for optical bands, brightness temperature (K) for
        thermal bands, sigma0 (dB) for SAR bands.
    """
    sensor = get_sensor(sensor)
    gsd = float(gsd_m if gsd_m is not None else sensor.gsd)
    if not isinstance(scene, Scene):
        scene = scene_from_labels(scene, label_gsd_m or gsd, seed)
    size = round(scene.size_m / gsd)
    out = np.empty((len(sensor), size, size), dtype=np.float32)
    optical, thermal = _band_matrices(sensor, toa)
    rng = scene.rng(zlib.crc32(sensor.name.encode()))
    groups: dict[tuple[str, float], list[int]] = {}
    for index, band in enumerate(sensor.bands):
        kind = spectra.band_kind(band)
        if kind == "sar":
            factor = scene.factor(gsd)
            looks = sar_looks if noise else None
            out[index] = spectra.sar_sigma0_db(scene.labels, scene.fields, band, factor, rng, looks)
        else:
            groups.setdefault((kind, _band_gsd(band.gsd_m, gsd, scene)), []).append(index)
    for (kind, band_gsd), indices in groups.items():
        matrix = (optical if kind == "optical" else thermal)[:, :, indices]
        factor = scene.factor(band_gsd)
        features = _features(scene, factor) if factor > 1 else None
        values = spectra.linear_band_values(scene.labels, scene.fields, matrix, factor, features)
        if kind == "thermal":
            values += scene.thermal_offset_k
        if noise:
            sigma = OPTICAL_NOISE if kind == "optical" else THERMAL_NOISE_K
            values += sigma * rng.standard_normal(values.shape, dtype=np.float32)
        if kind == "optical":
            np.clip(values, 0.0, None, out=values)
        repeat = round(band_gsd / gsd)
        if repeat > 1:
            values = np.repeat(np.repeat(values, repeat, axis=1), repeat, axis=2)
        out[indices] = values
    return out


# ----------------------------------------------------------------------------- writing


def _block_size(height: int, width: int) -> int | None:
    """Largest GeoTIFF tile (multiple of 16, at most 256) that fits the raster."""
    return next((b for b in (256, 128, 64, 32, 16) if b <= min(height, width)), None)


def _encode(values: np.ndarray, encoding: ProductEncoding) -> np.ndarray:
    if encoding.dtype.startswith("float"):
        return values.astype(encoding.dtype)
    stored = np.rint((values - encoding.offset) / encoding.scale)
    info = np.iinfo(encoding.dtype)
    low, high = encoding.stored_range or (info.min, info.max)
    return np.clip(stored, low, high).astype(encoding.dtype)


def _swath_wedge(size: int) -> np.ndarray:
    """Top-left triangle outside a slanted swath edge (True = no data)."""
    rows, cols = np.mgrid[0:size, 0:size]
    return cols + 0.6 * rows < 0.3 * size


def write_geotiff(
    path: Path,
    stored: np.ndarray,
    scene: Scene,
    gsd_m: float,
    nodata: float | None,
    band_tags: list[dict[str, str]],
    tags: dict[str, str],
    encoding: ProductEncoding | None = None,
) -> None:
    """Write a tiled, deflate-compressed, north-up GeoTIFF of ``stored`` [C, H, W].

    ``band_tags`` entries may hold a ``description`` (the band name); the rest become band tags.
    """
    count, height, width = stored.shape
    block = _block_size(height, width)
    tiling = {"tiled": True, "blockxsize": block, "blockysize": block} if block else {}
    # Deflate level 1: level 6 is ~3x slower for files only ~2% smaller.
    profile = {"driver": "GTiff", "height": height, "width": width, "count": count,
               "dtype": stored.dtype, "crs": scene.crs, "transform": scene.transform(gsd_m),
               "nodata": nodata, "compress": "deflate", "zlevel": 1,
               "predictor": 3 if stored.dtype.kind == "f" else 2, **tiling}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(stored)
        dataset.update_tags(**tags)
        for band_index, band_tag in enumerate(band_tags, start=1):
            band_tag = dict(band_tag)
            dataset.set_band_description(band_index, band_tag.pop("description", ""))
            dataset.update_tags(band_index, **band_tag)
        if encoding is not None:
            dataset.scales = (encoding.scale,) * count
            dataset.offsets = (encoding.offset,) * count


def _write_sensor(
    directory: Path, scene: Scene, sensor: Sensor, config: SyntheticWorldConfig
) -> tuple[Path, bool]:
    """Render and write one sensor's product; return its path and whether it got a wedge."""
    gsd = config.sensor_gsd(sensor.name)
    encoding = PRODUCT_ENCODINGS.get(sensor.name, FLOAT_ENCODING)
    stored = _encode(render_sensor(scene, sensor, gsd, sar_looks=config.sar_looks), encoding)
    wedge = config.nodata_wedge and scene.index == config.n_scenes - 1
    wedge = wedge and sensor.name.startswith("sentinel2")
    if wedge:
        stored[:, _swath_wedge(stored.shape[1])] = encoding.nodata
    band_tags = [
        {"description": b.name, "wavelength": repr(b.center_nm), "fwhm": repr(b.fwhm_nm),
         "wavelength_units": "nanometers", "gsd_m": repr(b.gsd_m)}
        for b in sensor.bands
    ]  # fmt: skip
    tags = {"RSFM_SENSOR": sensor.name, "RSFM_SCENE": scene.name, "RSFM_LEVEL": encoding.level,
            "RSFM_GENERATOR": f"rsfm.data.synthetic v{GENERATOR_VERSION}"}  # fmt: skip
    path = directory / f"{sensor.name}.tif"
    write_geotiff(path, stored, scene, gsd, encoding.nodata, band_tags, tags, encoding)
    return path, wedge


def _write_labels(directory: Path, scene: Scene, gsd_m: float) -> Path:
    """Write ``labels.tif`` (majority class per ``gsd_m`` cell) with a colour table."""
    path = directory / "labels.tif"
    classes = {f"CLASS_{i}": name for i, name in enumerate(CLASS_NAMES)}
    tags = {"RSFM_SENSOR": "labels", "RSFM_SCENE": scene.name, **classes}
    band_tags = [{"description": "land_cover", **classes}]
    labels = render_labels(scene, gsd_m)[None]
    write_geotiff(path, labels, scene, gsd_m, LABEL_NODATA, band_tags, tags)
    with rasterio.open(path, "r+") as dataset:
        dataset.write_colormap(1, {i: (*rgb, 255) for i, rgb in enumerate(CLASS_COLORS)})
    return path


def _write_scene(
    directory: Path, config: SyntheticWorldConfig, index: int, bar: tqdm
) -> dict[str, object]:
    """Draw and write one scene; return its manifest entry."""
    scene = generate_scene(config, index)
    scene_dir = directory / scene.name
    scene_dir.mkdir()
    files, wedged = {}, []
    for name in config.sensors:
        path, wedge = _write_sensor(scene_dir, scene, get_sensor(name), config)
        files[name] = path.relative_to(directory).as_posix()
        wedged += [name] if wedge else []
        bar.update()
    labels = _write_labels(scene_dir, scene, config.labels_gsd_m)
    files["labels"] = labels.relative_to(directory).as_posix()
    bar.update()
    counts = np.bincount(scene.labels.ravel(), minlength=NUM_CLASSES) / scene.labels.size
    fractions = {n: round(float(f), 5) for n, f in zip(CLASS_NAMES, counts, strict=True)}
    return {"name": scene.name, "location": scene.location, "crs": scene.crs,
            "bounds": list(scene.bounds), "files": files, "nodata_wedge": wedged,
            "class_fractions": fractions}  # fmt: skip


def _generate_world(directory: Path, config: SyntheticWorldConfig, progress: bool) -> None:
    sensors = [get_sensor(name) for name in config.sensors]
    total = config.n_scenes * (len(sensors) + 1)
    workers = min(GENERATION_THREADS, os.cpu_count() or 1, config.n_scenes)
    pool = ThreadPoolExecutor(max_workers=workers)  # numpy and GDAL release the GIL
    bar = tqdm(total=total, desc="rsfm synthetic world", unit="raster", disable=not progress)
    try:
        scenes = list(
            pool.map(lambda i: _write_scene(directory, config, i, bar), range(config.n_scenes))
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on failure, skip the scenes not started
        bar.close()
    manifest = {
        "generator": "rsfm.data.synthetic",
        "version": GENERATOR_VERSION,
        "config_hash": config.config_hash(),
        "seed": config.seed,
        "config": config.to_dict(),
        "fine_gsd_m": config.fine_gsd_m(),
        "classes": [
            {"id": i, "name": n, "color": list(c)}
            for i, (n, c) in enumerate(zip(CLASS_NAMES, CLASS_COLORS, strict=True))
        ],
        "labels": {"gsd_m": config.labels_gsd_m, "dtype": "uint8", "nodata": LABEL_NODATA},
        "sensors": {
            s.name: {
                "gsd_m": config.sensor_gsd(s.name),
                **_encoding_json(PRODUCT_ENCODINGS.get(s.name, FLOAT_ENCODING)),
                "bands": s.to_dict()["bands"],
            }
            for s in sensors
        },
        "scenes": scenes,
    }
    # Written last: a directory with manifest.json is a complete world.
    text = json.dumps(manifest, indent=2, allow_nan=False)
    (directory / "manifest.json").write_text(text + "\n")


def _encoding_json(encoding: ProductEncoding) -> dict:
    """The encoding as JSON (a NaN nodata becomes the string ``"nan"``)."""
    data = asdict(encoding)
    if isinstance(data["nodata"], float) and math.isnan(data["nodata"]):
        data["nodata"] = "nan"
    return data


# ----------------------------------------------------------------------------- cache


def default_cache_root() -> Path:
    """``$RSFM_CACHE/synthetic`` (``RSFM_CACHE`` defaults to ``~/.cache/rsfm``)."""
    return Path(os.environ.get("RSFM_CACHE", "~/.cache/rsfm")).expanduser() / "synthetic"


def load_manifest(root: str | Path) -> dict:
    """Read ``<root>/manifest.json`` of a generated world.

    Raises:
        FileNotFoundError: Naming the path, if the world is missing or incomplete.
    """
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no synthetic-world manifest (run ensure_synthetic_world)")
    return json.loads(path.read_text())


def _remove_stale_temporaries(root: Path) -> None:
    """Delete temp siblings left by killed runs (older than ``STALE_TEMP_SECONDS``)."""
    for candidate in root.parent.glob(f".{root.name}.tmp-*"):
        if time.time() - candidate.stat().st_mtime > STALE_TEMP_SECONDS:
            shutil.rmtree(candidate, ignore_errors=True)


def _existing_world(root: Path, config: SyntheticWorldConfig) -> bool:
    """True if ``root`` holds this config's world; raises if it holds something else."""
    if not root.exists():
        return False
    if (root / "manifest.json").is_file():
        found = load_manifest(root).get("config_hash")
        if found != config.config_hash():
            raise ValueError(
                f"{root}: holds a synthetic world of another config (hash {found}, wanted "
                f"{config.config_hash()}); pass another root or delete it"
            )
        return True
    if any(root.iterdir()):
        raise ValueError(
            f"{root}: exists, is not empty and has no manifest.json; refusing to use it"
        )
    return False


def ensure_synthetic_world(
    root: Path | None = None,
    config: SyntheticWorldConfig | None = None,
    progress: bool = True,
) -> Path:
    """Return the directory of a synthetic world, generating it on first use.

    Generation writes into a temporary sibling directory and renames it into place, so an
    interrupted run never leaves a half world; an existing world is reused untouched.

    Args:
        root: The world directory (default: ``default_cache_root() / config.config_hash()``).
        config: What to generate (default: ``SyntheticWorldConfig()``).
        progress: Show a tqdm progress bar while generating.

    Returns:
        The world directory (holding ``manifest.json`` and ``scene_*/``).

    Raises:
        ValueError: If ``root`` holds another config's world or unrelated files.
    """
    config = config or SyntheticWorldConfig()
    root = Path(root) if root is not None else default_cache_root() / config.config_hash()
    if _existing_world(root, config):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)
    temporary = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        _generate_world(temporary, config, progress)
        try:
            os.rename(temporary, root)  # atomic on one file system; replaces an empty root
        except OSError:
            if not _existing_world(root, config):  # not a concurrent run that finished first
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return root


def scene_files(root: str | Path, sensor: str) -> list[Path]:
    """Paths of one sensor's rasters (or ``"labels"``) across the scenes of a world, in order.

    Raises:
        KeyError: If the world has no rasters of that sensor.
    """
    root = Path(root)
    manifest = load_manifest(root)
    key = "labels" if sensor == "labels" else get_sensor(sensor).name
    paths = [root / s["files"][key] for s in manifest["scenes"] if key in s["files"]]
    if not paths:
        raise KeyError(f"{root}: no {key!r} rasters; sensors here: {list(manifest['sensors'])}")
    return paths

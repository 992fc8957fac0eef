"""Synthetic scenes: land-cover maps on a fine grid and their simulated sensor rasters.

A :class:`Scene` is one square footprint at a real place, drawn at the world's fine grid (labels
plus the variability fields of :mod:`rsfm.data.synthetic.spectra`). :func:`render_sensor`
simulates any
sensor over it at any GSD by area-averaging the fine scene, in physical units; the GeoTIFF
encoding of the products lives in :mod:`rsfm.data.synthetic.geotiff`, the world on disk in
:mod:`rsfm.data.synthetic.world`.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from rasterio.transform import Affine

from rsfm.data.synthetic import landscape, spectra
from rsfm.data.synthetic.config import SyntheticWorldConfig, is_multiple
from rsfm.data.synthetic.spectra import NUM_CLASSES
from rsfm.sensors import Sensor, get_sensor

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
OPTICAL_NOISE = 0.002  # reflectance noise std (order of Sentinel-2 / OLI noise-equivalent)
THERMAL_NOISE_K = 0.1


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
        if not is_multiple(gsd_m, self.fine_gsd_m) or not is_multiple(self.size_m, gsd_m):
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
    scale = config.landscape_scale
    labels = landscape.draw_label_map(rng, (pixels, pixels), gsd, scale)
    fields = landscape.draw_variability_fields(rng, labels, gsd, scale)
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
    nests = is_multiple(native, grid_gsd) and is_multiple(scene.size_m, native)
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

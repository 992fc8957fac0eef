"""The embedded default data: a seeded, georeferenced synthetic world of multi-sensor scenes.

Every scene is a land-cover map drawn at one fine grid (the greatest common divisor of all
sensor GSDs, 2 m by default) from smooth random fields, a meandering river with riparian
wetland, a road with settlements along it and rectangular crop parcels. Per-pixel variability
comes from three smooth fields (brightness ``b``, class condition ``u``, moisture ``v``; see
:mod:`rsfm.data.synthetic.spectra`). Each sensor is rendered over the SAME footprint at its own
GSD by
area-averaging the fine scene, so sensors are co-registered and physically consistent; optical
bands coarser than the product grid (Sentinel-2 20/60 m bands) are rendered at their native
GSD and nearest-upsampled, like a resampled L1C stack.

On disk (``ensure_synthetic_world``)::

    <root>/manifest.json             config, seed, version, classes, sensors, per-scene files
    <root>/scene_000/<sensor>.tif    one GeoTIFF per sensor, written like the real product
    <root>/scene_000/labels.tif      uint8 class ids at ``labels_gsd_m`` (10 m), nodata 255

Scenes sit at real places in UTM zones 32N/33N (EPSG:32632/32633), north-up, origins on
multiples of 60 m so 10/20/30/60 m grids nest. Same config -> bit-identical pixels.

Scene drawing and sensor simulation live in :mod:`rsfm.data.synthetic.scenes`, the product encodings
and GeoTIFF writer in :mod:`rsfm.data.synthetic.geotiff`; the config in
:mod:`rsfm.data.synthetic.config`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import rasterio
from tqdm.auto import tqdm

from rsfm.data.synthetic.config import GENERATOR_VERSION, SyntheticWorldConfig
from rsfm.data.synthetic.geotiff import (
    FLOAT_ENCODING,
    PRODUCT_ENCODINGS,
    ProductEncoding,
    _encode,
    write_geotiff,
)
from rsfm.data.synthetic.scenes import Scene, generate_scene, render_labels, render_sensor
from rsfm.data.synthetic.spectra import CLASS_COLORS, CLASS_NAMES, NUM_CLASSES
from rsfm.sensors import Sensor, get_sensor

LABEL_NODATA = 255
STALE_TEMP_SECONDS = 6 * 3600
GENERATION_THREADS = 2


# ----------------------------------------------------------------------------- writing


def _swath_wedge(size: int) -> np.ndarray:
    """Top-left triangle outside a slanted swath edge (True = no data)."""
    rows, cols = np.mgrid[0:size, 0:size]
    return cols + 0.6 * rows < 0.3 * size


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

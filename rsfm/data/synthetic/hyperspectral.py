"""Synthetic hyperspectral scenes with methane-like plumes: the offline data of ``hyperspectral``.

Scenes reuse the synthetic world's land cover (:func:`rsfm.data.synthetic.world.generate_scene`) and
its band-integrated spectra (:func:`rsfm.data.synthetic.scenes.render_sensor`
with the atmosphere on, so
water-vapour bands are dark and noisy like real top-of-atmosphere radiance). A plume is a
turbulent Gaussian plume from a point source: its column enhancement ``E(x, y)`` multiplies the
radiance by ``exp(-E * a_b)``, where ``a_b`` is the band-integrated unit absorption of a
methane-like spectrum (strong band near 2300 nm, weak one near 1650 nm). Every band is then hit
by sensor noise.

On disk (``ensure_plume_world``)::

    <root>/manifest.json                   config, hash, sensor bands, signature, per-scene facts
    <root>/scene_000/rsfm_synthetic_hsi.tif  int16 radiance-like reflectance x 1e4, nodata -32768,
                                           band tags: wavelength, fwhm, bbl (0 = water vapour)
    <root>/scene_000/plume_mask.tif        uint8: 0 background, 1 plume, 255 faint fringe/nodata

Same config -> bit-identical files. The world is written in a temporary sibling folder and
renamed into place, so an interrupted run never leaves half a world.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.geotiff import write_geotiff
from rsfm.data.synthetic.scenes import generate_scene, render_sensor
from rsfm.data.synthetic.spectra import WAVELENGTH_GRID_NM, gaussian_response
from rsfm.data.synthetic.world import default_cache_root
from rsfm.sensors import Band, Sensor, get_sensor, register_sensor

GENERATOR_VERSION = "1"
SENSOR_NAME = "rsfm_synthetic_hsi"
IMAGE_FILE = f"{SENSOR_NAME}.tif"
MASK_FILE = "plume_mask.tif"
MASK_NODATA = 255
IMAGE_NODATA = -32768
IMAGE_SCALE = 1e-4
CLASS_NAMES = ("background", "plume")
# Water-vapour absorption windows (nm) flagged as bad bands (bbl=0), as EnMAP/EMIT/NEON do.
WATER_VAPOUR_WINDOWS_NM: tuple[tuple[float, float], ...] = (
    (1340.0, 1460.0),
    (1790.0, 1960.0),
    (2450.0, 2600.0),
)
# Methane-like absorption: (centre nm, sigma nm, relative depth); band shapes after HITRAN
# CH4 transmittance convolved to ~10 nm, strongest in the 2.3 um band, weaker at 1.65 um.
_METHANE_LINES: tuple[tuple[float, float, float], ...] = (
    (2220.0, 18.0, 0.35),
    (2265.0, 14.0, 0.55),
    (2317.0, 16.0, 1.00),
    (2360.0, 14.0, 0.80),
    (2420.0, 20.0, 0.45),
    (1645.0, 9.0, 0.18),
    (1666.0, 7.0, 0.30),
    (1700.0, 10.0, 0.12),
)


# Hydrocarbon-bearing surfaces (roofing, plastics, oil-stained ground): C-H absorptions near
# 1730 and 2310 nm overlap the methane bands, the classic false alarms of matched filters.
_HYDROCARBON_LINES: tuple[tuple[float, float, float], ...] = (
    (1210.0, 12.0, 0.25),
    (1728.0, 12.0, 1.00),
    (1762.0, 10.0, 0.55),
    (2310.0, 14.0, 0.90),
    (2350.0, 14.0, 0.70),
)


def _synthetic_sensor(count: int = 96, gsd_m: float = 30.0) -> Sensor:
    """An imaging spectrometer: ``count`` bands evenly spaced 400-2500 nm, FWHM 1.2x spacing."""
    centres = np.linspace(400.0, 2500.0, count)
    fwhm = round(float(1.2 * (centres[1] - centres[0])), 3)
    bands = tuple(
        Band(f"B{i + 1:03d}", round(float(c), 3), fwhm, gsd_m) for i, c in enumerate(centres)
    )
    return Sensor(
        SENSOR_NAME,
        "hyperspectral",
        bands,
        "rsfm synthetic imaging spectrometer, 96 bands 400-2500 nm, 30 m (methane plume scenes)",
    )


SYNTHETIC_HSI = register_sensor(_synthetic_sensor())


def in_windows(wavelengths: np.ndarray, windows: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Whether each wavelength lies in one of the closed intervals ``windows``."""
    waves = np.asarray(wavelengths, dtype=np.float64)
    flags = np.zeros(waves.shape, dtype=bool)
    for low, high in windows:
        flags |= (waves >= low) & (waves <= high)
    return flags


def methane_absorption(wavelengths: np.ndarray = WAVELENGTH_GRID_NM) -> np.ndarray:
    """Unit absorption spectrum of the synthetic methane (peak 1 near 2317 nm)."""
    wl = np.asarray(wavelengths, dtype=np.float64)
    return sum(d * np.exp(-0.5 * ((wl - c) / s) ** 2) for c, s, d in _METHANE_LINES)


def hydrocarbon_absorption(wavelengths: np.ndarray = WAVELENGTH_GRID_NM) -> np.ndarray:
    """Unit absorption spectrum of the synthetic hydrocarbon-bearing surfaces (confusers)."""
    wl = np.asarray(wavelengths, dtype=np.float64)
    return sum(d * np.exp(-0.5 * ((wl - c) / s) ** 2) for c, s, d in _HYDROCARBON_LINES)


def _band_integrated(sensor: Sensor, spectrum: np.ndarray) -> np.ndarray:
    return np.array([gaussian_response(b) @ spectrum for b in sensor.bands])


def plume_signature(sensor: str | Sensor = SENSOR_NAME) -> np.ndarray:
    """Band-integrated unit absorption ``a_b`` of the plume for each band of a sensor (float64)."""
    return _band_integrated(get_sensor(sensor), methane_absorption(WAVELENGTH_GRID_NM))


def confuser_depth(
    size: int, rng: np.random.Generator, count: int, depth_range: tuple[float, float]
) -> np.ndarray:
    """Rectangular hydrocarbon-bearing surfaces (2-8 px sides): absorption depth [size, size]."""
    depth = np.zeros((size, size))
    for _ in range(count):
        height, width = rng.integers(2, 9, 2)
        row, col = rng.integers(0, size - height), rng.integers(0, size - width)
        depth[row : row + height, col : col + width] = rng.uniform(*depth_range)
    return depth


@dataclass
class PlumeWorldConfig:
    """What to generate; its hash names the cache folder.

    Attributes:
        seed: Master seed (land cover, plumes and noise).
        n_scenes: Number of scenes.
        scene_size_m: Side of each square scene (multiple of ``gsd_m`` and 10 m).
        gsd_m: Pixel size of the hyperspectral product.
        plume_probability: Chance of each of the ``max_plumes`` draws to place a plume.
        max_plumes: Most plumes per scene.
        depth_range: Range of the peak absorption depth ``E`` of a plume at its source.
        label_depth: Pixels whose absorption depth reaches this are labelled plume.
        fringe_fraction: Depths in ``[fringe_fraction * label_depth, label_depth)`` are ignored.
        noise: Additive noise std (reflectance units), on top of a 0.5 % relative term.
        confusers: Most hydrocarbon-bearing rectangles per scene (matched-filter false alarms).
        confuser_depth_range: Range of their absorption depth.
    """

    seed: int = 0
    n_scenes: int = 8
    scene_size_m: float = 1920.0
    gsd_m: float = 30.0
    plume_probability: float = 0.85
    max_plumes: int = 2
    depth_range: tuple[float, float] = (0.5, 1.5)
    label_depth: float = 0.15
    fringe_fraction: float = 0.5
    noise: float = 0.01
    confusers: int = 8
    confuser_depth_range: tuple[float, float] = (0.3, 1.0)

    def __post_init__(self) -> None:
        self.depth_range = (float(self.depth_range[0]), float(self.depth_range[1]))
        low, high = self.confuser_depth_range
        self.confuser_depth_range = (float(low), float(high))
        if self.n_scenes < 1:
            raise ValueError(f"n_scenes must be >= 1, got {self.n_scenes}")
        if not 0.0 <= self.plume_probability <= 1.0:
            raise ValueError(f"plume_probability must be in [0, 1], got {self.plume_probability}")

    def world_config(self) -> SyntheticWorldConfig:
        """The land-cover world the scenes are drawn from (10 m fine grid for mixed pixels)."""
        return SyntheticWorldConfig(
            seed=self.seed,
            n_scenes=self.n_scenes,
            scene_size_m=self.scene_size_m,
            sensors=(SENSOR_NAME,),
            gsd_m={SENSOR_NAME: self.gsd_m},
            labels_gsd_m=10.0,
            nodata_wedge=False,
        )

    def config_hash(self) -> str:
        """Short hash of the config, the generator version and the sensor's band table."""
        payload = json.dumps(
            {
                "config": asdict(self),
                "version": GENERATOR_VERSION,
                "sensor": SYNTHETIC_HSI.to_dict(),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def plume_enhancement(
    size: int, rng: np.random.Generator, peak_depth: float, gsd_m: float
) -> np.ndarray:
    """One turbulent Gaussian plume: absorption depth ``E`` [size, size] (0 far from it).

    A point source emits along a random wind direction; the cross-wind spread grows linearly
    with distance, the concentration decays as 1/spread, and a smoothed log-normal field breaks
    the plume into puffs.
    """
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    source = rng.uniform(0.15 * size, 0.85 * size, 2)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    along = (cols - source[1]) * math.cos(angle) + (rows - source[0]) * math.sin(angle)
    across = -(cols - source[1]) * math.sin(angle) + (rows - source[0]) * math.cos(angle)
    length = rng.uniform(0.2, 0.45) * size
    spread0 = max(1.0, 45.0 / gsd_m)
    spread = spread0 + rng.uniform(0.12, 0.25) * np.clip(along, 0.0, None)
    downwind = np.clip(along, -spread0, None)
    core = np.exp(-0.5 * (across / spread) ** 2) * spread0 / spread
    core *= np.exp(-np.clip(downwind, 0.0, None) / length) * (downwind > -spread0)
    turbulence = gaussian_filter(rng.standard_normal((size, size)), sigma=2.0)
    turbulence /= turbulence.std() + 1e-12
    return peak_depth * core * np.exp(0.35 * turbulence)


def render_plume_scene(config: PlumeWorldConfig, index: int) -> dict[str, Any]:
    """Draw scene ``index``: radiance with plumes, the absorption depth and the label mask.

    Returns:
        ``{"radiance": float32 [C, H, W], "depth": float32 [H, W], "mask": uint8 [H, W],
        "n_plumes": int, "scene": Scene}``.
    """
    scene = generate_scene(config.world_config(), index)
    clean = render_sensor(scene, SYNTHETIC_HSI, config.gsd_m, noise=False, toa=True)
    size = clean.shape[1]
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, index, 7_001]))
    depth = np.zeros((size, size))
    n_plumes = 0
    for _ in range(config.max_plumes):
        if rng.random() < config.plume_probability:
            peak = rng.uniform(*config.depth_range)
            depth += plume_enhancement(size, rng, peak, config.gsd_m)
            n_plumes += 1
    signature = plume_signature(SYNTHETIC_HSI)
    surfaces = confuser_depth(
        size, rng, int(rng.integers(0, config.confusers + 1)), config.confuser_depth_range
    )
    hydrocarbon = _band_integrated(SYNTHETIC_HSI, hydrocarbon_absorption())
    optical_depth = (
        depth[None] * signature[:, None, None] + surfaces[None] * hydrocarbon[:, None, None]
    )
    radiance = clean * np.exp(-optical_depth)
    sigma = np.sqrt(config.noise**2 + (0.005 * radiance) ** 2)
    radiance = radiance + sigma * rng.standard_normal(radiance.shape)
    bad = in_windows(SYNTHETIC_HSI.wavelengths, WATER_VAPOUR_WINDOWS_NM)
    radiance[bad] += 3.0 * config.noise * rng.standard_normal(radiance[bad].shape)  # noisier
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[depth >= config.fringe_fraction * config.label_depth] = MASK_NODATA
    mask[depth >= config.label_depth] = 1
    return {
        "radiance": np.clip(radiance, 0.0, None).astype(np.float32),
        "depth": depth.astype(np.float32),
        "mask": mask,
        "n_plumes": n_plumes,
        "scene": scene,
    }


def _write_scene(directory: Path, config: PlumeWorldConfig, index: int) -> dict[str, object]:
    """Render and write one scene's image and mask; return its manifest entry."""
    drawn = render_plume_scene(config, index)
    scene = drawn["scene"]
    folder = directory / scene.name
    folder.mkdir()
    stored = np.clip(np.rint(drawn["radiance"] / IMAGE_SCALE), -2000, 32767).astype(np.int16)
    bad = in_windows(SYNTHETIC_HSI.wavelengths, WATER_VAPOUR_WINDOWS_NM)
    band_tags = [
        {"description": b.name, "wavelength": repr(b.center_nm), "fwhm": repr(b.fwhm_nm),
         "wavelength_units": "nanometers", "bbl": "0" if flag else "1"}
        for b, flag in zip(SYNTHETIC_HSI.bands, bad, strict=True)
    ]  # fmt: skip
    tags = {"RSFM_SENSOR": SENSOR_NAME, "RSFM_SCENE": scene.name, "RSFM_LEVEL": "TOA reflectance",
            "RSFM_GENERATOR": f"rsfm.data.synthetic_hyperspectral v{GENERATOR_VERSION}",
            "SCALE": repr(IMAGE_SCALE)}  # fmt: skip
    write_geotiff(folder / IMAGE_FILE, stored, scene, config.gsd_m, IMAGE_NODATA, band_tags, tags)
    mask_tags = {"RSFM_SENSOR": "labels", "RSFM_SCENE": scene.name, "CLASS_0": CLASS_NAMES[0],
                 "CLASS_1": CLASS_NAMES[1], "IGNORE": f"{MASK_NODATA}: faint fringe"}  # fmt: skip
    write_geotiff(
        folder / MASK_FILE,
        drawn["mask"][None],
        scene,
        config.gsd_m,
        MASK_NODATA,
        [{"description": "plume"}],
        mask_tags,
    )
    labelled = drawn["mask"] != MASK_NODATA
    return {
        "name": scene.name,
        "location": scene.location,
        "crs": scene.crs,
        "bounds": list(scene.bounds),
        "files": {"image": f"{scene.name}/{IMAGE_FILE}", "mask": f"{scene.name}/{MASK_FILE}"},
        "n_plumes": int(drawn["n_plumes"]),
        "plume_fraction": round(float((drawn["mask"] == 1).sum() / labelled.sum()), 5),
    }


def _write_world(directory: Path, config: PlumeWorldConfig) -> None:
    scenes = [_write_scene(directory, config, i) for i in range(config.n_scenes)]
    bad = in_windows(SYNTHETIC_HSI.wavelengths, WATER_VAPOUR_WINDOWS_NM)
    manifest = {
        "generator": "rsfm.data.synthetic_hyperspectral",
        "version": GENERATOR_VERSION,
        "config_hash": config.config_hash(),
        "config": asdict(config),
        "sensor": SYNTHETIC_HSI.to_dict(),
        "bad_bands": [b.name for b, flag in zip(SYNTHETIC_HSI.bands, bad, strict=True) if flag],
        "signature": [round(float(v), 6) for v in plume_signature(SYNTHETIC_HSI)],
        "classes": list(CLASS_NAMES),
        "scenes": scenes,
    }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def ensure_plume_world(root: Path | None = None, config: PlumeWorldConfig | None = None) -> Path:
    """Folder of a synthetic plume world, generated on first use (then reused untouched).

    Args:
        root: World folder (default: ``$RSFM_CACHE/synthetic_hsi/<config hash>``).
        config: What to generate (default: ``PlumeWorldConfig()``).

    Raises:
        ValueError: If ``root`` holds another config's world.
    """
    config = config or PlumeWorldConfig()
    if root is None:
        root = default_cache_root().parent / "synthetic_hsi" / config.config_hash()
    root = Path(root)
    manifest = root / "manifest.json"
    if manifest.is_file():
        found = json.loads(manifest.read_text()).get("config_hash")
        if found != config.config_hash():
            raise ValueError(f"{root}: holds a plume world of another config (hash {found})")
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        _write_world(temporary, config)
        try:
            os.rename(temporary, root)  # atomic on one file system
        except OSError:
            if not (root / "manifest.json").is_file():  # not a concurrent run that finished
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return root


def plume_scene_files(root: str | Path) -> tuple[list[Path], list[Path]]:
    """(image paths, mask paths) of a plume world, in scene order."""
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    images = [root / s["files"]["image"] for s in manifest["scenes"]]
    masks = [root / s["files"]["mask"] for s in manifest["scenes"]]
    return images, masks

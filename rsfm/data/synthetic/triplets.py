"""Super-resolution triplets from the synthetic world: LR, older HR reference, HR target.

Every scene is drawn with :func:`rsfm.data.synthetic.scenes.generate_scene` on the HR grid.
The target
is the scene rendered at ``hr_gsd_m``; the LR image is the same scene rendered (area-averaged,
with its own noise) at ``hr_gsd_m * scale``; the reference is an *older* acquisition: the same
scene with land cover changed in a few patches (new parcels, built-up, cleared forest ...),
a different per-band gain and fresh noise. The changed mask (HR grid) is saved, so evaluation
can tell "should copy the reference" from "must not copy it".

On disk (``ensure_synthetic_triplets``)::

    <root>/manifest.json              config, hash, per-scene files and changed fractions
    <root>/scene_000/lr.tif           float32 reflectance at hr_gsd_m * scale
    <root>/scene_000/hr.tif           float32 reflectance at hr_gsd_m (the target)
    <root>/scene_000/reference.tif    float32 reflectance at hr_gsd_m (older, partly changed)
    <root>/scene_000/changed.tif      uint8 1 where reference land cover differs from the target
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.geotiff import FLOAT_ENCODING, write_geotiff
from rsfm.data.synthetic.scenes import Scene, generate_scene, render_sensor
from rsfm.data.synthetic.spectra import NUM_CLASSES
from rsfm.data.synthetic.world import default_cache_root
from rsfm.sensors import Sensor, get_sensor

TRIPLET_VERSION = "1"
TRIPLET_FILES = ("lr", "hr", "reference", "changed")


@dataclass
class SyntheticTripletConfig:
    """What to generate (hashing it names the cache directory).

    Attributes:
        seed: Master seed.
        n_scenes: Number of scenes.
        scene_size_m: Side of each square scene (a multiple of ``hr_gsd_m * scale``).
        hr_gsd_m: GSD of the target and the reference.
        scale: LR GSD / HR GSD (2..10).
        sensor: Registry sensor rendered for all three images.
        bands: Band names of ``sensor`` to keep (None: all).
        changed_patches: Rectangular patches of changed land cover per scene.
        patch_size_m: Side range (min, max) of a changed patch.
        reference_gain: Max relative per-band gain difference of the reference.
    """

    seed: int = 0
    n_scenes: int = 4
    scene_size_m: float = 256.0
    hr_gsd_m: float = 2.0
    scale: int = 4
    sensor: str = "naip"
    bands: tuple[str, ...] | None = ("R", "G", "B")
    changed_patches: int = 3
    patch_size_m: tuple[float, float] = (24.0, 64.0)
    reference_gain: float = 0.05

    def __post_init__(self) -> None:
        if not 2 <= int(self.scale) <= 10:
            raise ValueError(f"scale must be in 2..10, got {self.scale}")
        lr_gsd = self.hr_gsd_m * self.scale
        if abs(self.scene_size_m / lr_gsd - round(self.scene_size_m / lr_gsd)) > 1e-6:
            raise ValueError(f"scene_size_m={self.scene_size_m} is not a multiple of {lr_gsd} m")
        self.bands = tuple(self.bands) if self.bands is not None else None
        self.patch_size_m = (float(self.patch_size_m[0]), float(self.patch_size_m[1]))

    @property
    def lr_gsd_m(self) -> float:
        """GSD of the LR image."""
        return self.hr_gsd_m * self.scale

    def band_table(self) -> Sensor:
        """The rendered sensor, restricted to ``bands``."""
        sensor = get_sensor(self.sensor)
        if self.bands is None:
            return sensor
        by_name = {b.name: b for b in sensor.bands}
        missing = [b for b in self.bands if b not in by_name]
        if missing:
            raise ValueError(
                f"sensor {sensor.name!r} has no bands {missing}; it has {list(by_name)}"
            )
        return Sensor(sensor.name, sensor.modality, tuple(by_name[b] for b in self.bands))

    def world_config(self) -> SyntheticWorldConfig:
        """The synthetic-world config whose scenes the triplets are drawn from."""
        return SyntheticWorldConfig(
            seed=self.seed,
            n_scenes=self.n_scenes,
            scene_size_m=self.scene_size_m,
            sensors=(self.sensor,),
            gsd_m={self.sensor: self.hr_gsd_m},
            labels_gsd_m=self.lr_gsd_m,
            nodata_wedge=False,
        )

    def config_hash(self) -> str:
        """Short hash of the config and generator version."""
        payload = json.dumps({"config": asdict(self), "version": TRIPLET_VERSION}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def change_land_cover(scene: Scene, config: SyntheticTripletConfig) -> np.ndarray:
    """The scene's fine label map with ``changed_patches`` rectangles set to another class."""
    rng = scene.rng(0xC4A6)
    labels = scene.labels.copy()
    size = labels.shape[0]
    low, high = (max(2, round(m / scene.fine_gsd_m)) for m in config.patch_size_m)
    for _ in range(config.changed_patches):
        height, width = rng.integers(low, high + 1, size=2)
        top, left = rng.integers(0, max(1, size - height)), rng.integers(0, max(1, size - width))
        patch = labels[top : top + height, left : left + width]
        dominant = np.bincount(patch.ravel(), minlength=NUM_CLASSES).argmax()
        choices = [c for c in range(NUM_CLASSES) if c != dominant]
        patch[...] = rng.choice(choices)
    return labels


def render_triplet(scene: Scene, config: SyntheticTripletConfig) -> dict[str, np.ndarray]:
    """LR ``[C, h, w]``, HR and reference ``[C, H, W]`` (float32) and changed mask ``[H, W]``."""
    sensor = config.band_table()
    hr = render_sensor(scene, sensor, config.hr_gsd_m)
    lr = render_sensor(scene, sensor, config.lr_gsd_m)
    older_labels = change_land_cover(scene, config)
    # Same variability fields (same fields, roads, texture), other land cover and noise seed.
    older = dataclasses.replace(scene, labels=older_labels, seed=scene.seed + 7919)
    reference = render_sensor(older, sensor, config.hr_gsd_m)
    gain = 1.0 + config.reference_gain * scene.rng(0x6A1).uniform(-1.0, 1.0, len(sensor))
    reference *= gain.astype(np.float32)[:, None, None]
    changed = (older_labels != scene.labels).astype(np.uint8)  # fine grid == HR grid
    return {"lr": lr, "hr": hr, "reference": reference, "changed": changed}


def _band_tags(sensor: Sensor) -> list[dict[str, str]]:
    return [
        {"description": b.name, "wavelength": repr(b.center_nm), "fwhm": repr(b.fwhm_nm),
         "wavelength_units": "nanometers", "gsd_m": repr(b.gsd_m)}
        for b in sensor.bands
    ]  # fmt: skip


def _write_triplet(folder: Path, scene: Scene, config: SyntheticTripletConfig) -> dict[str, Any]:
    """Render and write one scene's triplet; return its manifest entry."""
    arrays = render_triplet(scene, config)
    sensor = config.band_table()
    tags = {"RSFM_SENSOR": sensor.name, "RSFM_SCENE": scene.name}
    folder.mkdir(parents=True)
    files = {}
    for key in ("lr", "hr", "reference"):
        gsd = config.lr_gsd_m if key == "lr" else config.hr_gsd_m
        path = folder / f"{key}.tif"
        role = {**tags, "RSFM_ROLE": key}
        write_geotiff(path, arrays[key], scene, gsd, None, _band_tags(sensor), role, FLOAT_ENCODING)
        files[key] = path
    changed = folder / "changed.tif"
    mask_tags = [{"description": "changed"}]
    write_geotiff(changed, arrays["changed"][None], scene, config.hr_gsd_m, None, mask_tags, tags)
    files["changed"] = changed
    return {
        "name": scene.name,
        "crs": scene.crs,
        "bounds": list(scene.bounds),
        "files": {k: f"{scene.name}/{v.name}" for k, v in files.items()},
        "changed_fraction": round(float(arrays["changed"].mean()), 5),
    }


def default_triplet_root(config: SyntheticTripletConfig) -> Path:
    """``$RSFM_CACHE/synthetic_triplets/<hash>``."""
    return default_cache_root().parent / "synthetic_triplets" / config.config_hash()


def ensure_synthetic_triplets(
    root: str | os.PathLike[str] | None = None, config: SyntheticTripletConfig | None = None
) -> Path:
    """Return a folder of synthetic triplets, generating it (atomically) on first use.

    Raises:
        ValueError: If ``root`` holds triplets of another config.
    """
    config = config or SyntheticTripletConfig()
    target = Path(root) if root is not None else default_triplet_root(config)
    manifest = target / "manifest.json"
    if manifest.is_file():
        found = json.loads(manifest.read_text()).get("config_hash")
        if found != config.config_hash():
            raise ValueError(f"{target}: holds triplets of another config (hash {found})")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        world = config.world_config()
        scenes = [
            _write_triplet(staged / f"scene_{i:03d}", generate_scene(world, i), config)
            for i in range(config.n_scenes)
        ]
        data = {
            "generator": "rsfm.data.synthetic_triplets",
            "version": TRIPLET_VERSION,
            "config_hash": config.config_hash(),
            "config": asdict(config),
            "scale": config.scale,
            "scenes": scenes,
        }
        (staged / "manifest.json").write_text(json.dumps(data, indent=2) + "\n")
        try:
            os.rename(staged, target)  # atomic; a concurrent identical run may have won
        except OSError:
            if not (target / "manifest.json").is_file():
                raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return target


def triplet_files(root: str | os.PathLike[str]) -> list[dict[str, Path]]:
    """Per scene ``{"lr", "hr", "reference", "changed"}`` paths of a triplet folder."""
    root = Path(root)
    manifest = json.loads((root / "manifest.json").read_text())
    return [{k: root / v for k, v in s["files"].items()} for s in manifest["scenes"]]


__all__ = [
    "SyntheticTripletConfig",
    "change_land_cover",
    "default_triplet_root",
    "ensure_synthetic_triplets",
    "render_triplet",
    "triplet_files",
]

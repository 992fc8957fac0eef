"""Captions for the synthetic world: crops at several GSDs described from their label maps.

:func:`ensure_caption_world` builds (or reuses) a small synthetic world, cuts every scene's
Sentinel-2 raster into square crops at a few ground sampling distances (area-averaged from the
10 m grid) and writes::

    <root>/captions.jsonl          image, captions (3 phrasings), gsd, label, fractions
    <root>/crops/<scene>_g<gsd>_r<row>_c<col>.tif   float32 reflectance, real CRS/transform
    <root>/crops/....png           (with ``png=True``) an RGB preview, for RGB-only models
    <root>/captions_rgb.jsonl      (with ``png=True``) the same rows pointing at the PNGs

Captions describe land-cover composition from the class fractions of ``labels.tif`` ("mostly
forest with a river"), layout (where the dominant class and the river lie: left/right,
top/bottom) and the resolution ("at 10 m"). ``label`` is the dominant class and ``fractions``
the per-class fractions. Same arguments -> identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine

from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.spectra import CLASS_NAMES, NUM_CLASSES
from rsfm.data.synthetic.world import (
    LABEL_NODATA,
    default_cache_root,
    ensure_synthetic_world,
    load_manifest,
)
from rsfm.sensors import Sensor, get_sensor

CAPTION_WORLD_VERSION = "1"
MANIFEST_NAME = "captions.jsonl"
RGB_MANIFEST_NAME = "captions_rgb.jsonl"
DEFAULT_BANDS = ("B02", "B03", "B04", "B08")
CLASS_PHRASES = {
    "water": "water",
    "forest": "forest",
    "grassland": "grassland",
    "cropland": "cropland",
    "built_up": "built-up area",
    "bare_soil": "bare soil",
    "wetland": "wetland",
}
RIVER_FRACTION = 0.03  # water above this share of a crop is described as a river
MENTION_FRACTION = 0.05  # built-up / wetland above this share get a mention
LAYOUT_CONTRAST = 0.3  # half-vs-half fraction difference that counts as "on the left"


def _phrase(class_id: int) -> str:
    return CLASS_PHRASES[CLASS_NAMES[class_id]]


def _gsd_text(gsd: float) -> str:
    return f"{gsd:g} m"


def _composition(fractions: np.ndarray) -> str:
    """Phrases like 'mostly forest', 'mainly cropland and grassland', 'a mix of a, b and c'."""
    order = np.argsort(-fractions, kind="stable")
    first, second, third = (int(i) for i in order[:3])
    if fractions[first] >= 0.6:
        return f"mostly {_phrase(first)}"
    if fractions[first] + fractions[second] >= 0.7:
        return f"mainly {_phrase(first)} and {_phrase(second)}"
    return f"a mix of {_phrase(first)}, {_phrase(second)} and {_phrase(third)}"


def _extras(fractions: np.ndarray, composition: str) -> list[str]:
    """Mentions of a river, buildings and wetland not already named."""
    water = CLASS_NAMES.index("water")
    extras = []
    if fractions[water] >= RIVER_FRACTION and "water" not in composition:
        extras.append("a river")
    for name, words in (("built_up", "some buildings"), ("wetland", "some wetland")):
        index = CLASS_NAMES.index(name)
        if fractions[index] >= MENTION_FRACTION and CLASS_PHRASES[name] not in composition:
            extras.append(words)
    return extras


def _side(mask: np.ndarray) -> str | None:
    """Where a class mask lies in a crop: ``on the left`` ... or None when spread evenly."""
    height, width = mask.shape
    halves = {
        "on the left": mask[:, : width // 2].mean() - mask[:, width // 2 :].mean(),
        "at the top": mask[: height // 2].mean() - mask[height // 2 :].mean(),
    }
    name, contrast = max(halves.items(), key=lambda item: abs(item[1]))
    if abs(contrast) < LAYOUT_CONTRAST:
        return None
    if contrast > 0:
        return name
    return {"on the left": "on the right", "at the top": "at the bottom"}[name]


def _layout(labels: np.ndarray, fractions: np.ndarray) -> str | None:
    dominant = int(np.argmax(fractions))
    water = CLASS_NAMES.index("water")
    parts = []
    if fractions[water] >= RIVER_FRACTION:
        side = _side(labels == water)
        if side:
            parts.append(f"the river {side}")
    side = _side(labels == dominant) if fractions[dominant] < 0.9 else None
    if side:
        parts.append(f"the {_phrase(dominant)} {side}")
    return " and ".join(parts) or None


def describe_crop(labels: np.ndarray, gsd: float, rng: np.random.Generator) -> list[str]:
    """Three captions of a crop from its class-id map (``LABEL_NODATA`` ignored).

    Args:
        labels: uint8 class ids of the crop (any grid covering its footprint).
        gsd: Pixel size of the crop image (m), named in the captions.
        rng: Picks among phrasings (deterministic for a seeded generator).
    """
    known = labels[labels != LABEL_NODATA]
    fractions = np.bincount(known, minlength=NUM_CLASSES)[:NUM_CLASSES] / max(known.size, 1)
    composition = _composition(fractions)
    extras = _extras(fractions, composition)
    with_extras = composition + (" with " + " and ".join(extras) if extras else "")
    layout = _layout(labels, fractions)
    resolution = _gsd_text(gsd)
    noun = rng.choice(["satellite image", "satellite scene", "remote sensing image"])
    captions = [
        f"{with_extras}" + (f", {layout}" if layout else "") + f", at {resolution} resolution",
        f"a {resolution} {noun} of {with_extras}",
        f"{noun} at {resolution} per pixel showing {with_extras}"
        + (f" with {layout}" if layout else ""),
    ]
    return captions


def _area_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Area-average a [C, H, W] array by an integer factor (reshape-mean: exact box filter)."""
    if factor == 1:
        return image
    c, h, w = image.shape
    return image.reshape(c, h // factor, factor, w // factor, factor).mean(axis=(2, 4))


def _write_crop(
    path: Path, pixels: np.ndarray, crs: object, transform: Affine, sensor: Sensor
) -> None:
    profile = {
        "driver": "GTiff",
        "height": pixels.shape[1],
        "width": pixels.shape[2],
        "count": pixels.shape[0],
        "dtype": "float32",
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
        "predictor": 3,
    }
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(pixels.astype(np.float32))
        dataset.update_tags(RSFM_SENSOR=sensor.name, RSFM_LEVEL="TOA reflectance")
        for index, band in enumerate(sensor.bands, start=1):
            dataset.set_band_description(index, band.name)
            dataset.update_tags(
                index,
                wavelength=repr(band.center_nm),
                fwhm=repr(band.fwhm_nm),
                wavelength_units="nanometers",
            )


def _write_png(path: Path, pixels: np.ndarray, rgb_rows: list[int]) -> None:
    from PIL import Image  # lazy: only the optional previews need Pillow

    rgb = pixels[rgb_rows]
    # Fixed reflectance stretch (0..0.3 -> 0..255) so previews of all crops are comparable.
    scaled = np.clip(rgb / 0.3 * 255.0, 0, 255).round().astype(np.uint8)
    Image.fromarray(scaled.transpose(1, 2, 0)).save(path)


def _build(
    directory: Path,
    world: Path,
    sensor: str,
    bands: tuple[str, ...],
    gsds: tuple[float, ...],
    crop_px: int,
    seed: int,
    png: bool,
) -> None:
    crops = directory / "crops"
    crops.mkdir()
    selected = get_sensor(sensor).select(list(bands))
    rgb_rows = [list(bands).index(b) for b in ("B04", "B03", "B02")] if png else []
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    rows, rgb_rows_out = [], []
    manifest = load_manifest(world)
    for scene in manifest["scenes"]:
        with rasterio.open(world / scene["files"][sensor]) as dataset:
            names = [d.upper() for d in dataset.descriptions]
            indexes = [names.index(b.upper()) + 1 for b in bands]
            pixels = dataset.read(indexes, masked=True)
            scale = np.asarray(dataset.scales)[np.asarray(indexes) - 1][:, None, None]
            offset = np.asarray(dataset.offsets)[np.asarray(indexes) - 1][:, None, None]
            base_gsd, base_transform, crs = dataset.res[0], dataset.transform, dataset.crs
        valid = ~np.ma.getmaskarray(pixels).any(axis=0)
        reflectance = pixels.filled(0).astype(np.float64) * scale + offset
        with rasterio.open(world / scene["files"]["labels"]) as dataset:
            labels, label_gsd = dataset.read(1), dataset.res[0]
        for gsd in gsds:
            factor = round(gsd / base_gsd)
            image = _area_mean(reflectance, factor)
            ok = _area_mean(valid[None].astype(np.float64), factor)[0] > 0.999
            side_m = crop_px * gsd
            per_label = round(side_m / label_gsd)
            for r in range(image.shape[1] // crop_px):
                for c in range(image.shape[2] // crop_px):
                    window = np.s_[r * crop_px : (r + 1) * crop_px, c * crop_px : (c + 1) * crop_px]
                    if not ok[window].all():
                        continue  # crops touching nodata are skipped
                    crop_labels = labels[
                        r * per_label : (r + 1) * per_label, c * per_label : (c + 1) * per_label
                    ]
                    x0 = base_transform.c + c * crop_px * factor * base_transform.a
                    y0 = base_transform.f + r * crop_px * factor * base_transform.e
                    transform = Affine(gsd, 0.0, x0, 0.0, -gsd, y0)
                    stem = f"{scene['name']}_g{gsd:g}_r{r}_c{c}"
                    path = crops / f"{stem}.tif"
                    crop = image[(slice(None), *window)]
                    _write_crop(path, crop, crs, transform, selected)
                    known = crop_labels[crop_labels != LABEL_NODATA]
                    fractions = np.bincount(known, minlength=NUM_CLASSES) / max(known.size, 1)
                    row = {
                        "image": f"crops/{path.name}",
                        "captions": describe_crop(crop_labels, gsd, rng),
                        "gsd": float(gsd),
                        "label": CLASS_NAMES[int(np.argmax(fractions))],
                        "fractions": {
                            n: round(float(f), 4)
                            for n, f in zip(CLASS_NAMES, fractions, strict=True)
                        },
                        "scene": scene["name"],
                    }
                    rows.append(row)
                    if png:
                        _write_png(crops / f"{stem}.png", crop, rgb_rows)
                        rgb_rows_out.append({**row, "image": f"crops/{stem}.png"})
    (directory / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    if png:
        text = "".join(json.dumps(r) + "\n" for r in rgb_rows_out)
        (directory / RGB_MANIFEST_NAME).write_text(text)


def ensure_caption_world(
    root: str | Path | None = None,
    seed: int = 0,
    n_scenes: int = 4,
    scene_size_m: float = 1280.0,
    crop_px: int = 32,
    gsds: tuple[float, ...] = (10.0, 20.0, 40.0),
    bands: tuple[str, ...] = DEFAULT_BANDS,
    png: bool = False,
) -> Path:
    """Return a folder holding ``captions.jsonl`` and its crops, generating it on first use.

    Args:
        root: Output folder (default: ``$RSFM_CACHE/synthetic/captions-<hash of the args>``).
        seed: Seed of the synthetic world and of the caption phrasings.
        n_scenes: Scenes of the underlying world.
        scene_size_m: Scene side (a multiple of ``crop_px * max(gsds)`` keeps every GSD).
        crop_px: Crop side in pixels.
        gsds: Crop GSDs (integer multiples of 10 m: area-averaged from Sentinel-2's grid).
        bands: Sentinel-2 bands of the crops.
        png: Also write RGB PNG previews and ``captions_rgb.jsonl``.

    Returns:
        The folder (``<root>/captions.jsonl`` is the manifest).
    """
    sensor = "sentinel2_l1c"
    args = {
        "seed": seed,
        "n_scenes": n_scenes,
        "scene_size_m": float(scene_size_m),
        "crop_px": crop_px,
        "gsds": [float(g) for g in gsds],
        "bands": list(bands),
        "png": png,
        "version": CAPTION_WORLD_VERSION,
    }
    digest = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(root) if root is not None else default_cache_root() / f"captions-{digest}"
    if (root / "args.json").is_file():
        if json.loads((root / "args.json").read_text()) != args:
            raise ValueError(f"{root}: holds a caption world built with other arguments")
        return root
    config = SyntheticWorldConfig(
        seed=seed,
        n_scenes=n_scenes,
        scene_size_m=scene_size_m,
        sensors=(sensor,),
        nodata_wedge=False,
    )
    world = ensure_synthetic_world(None, config, progress=False)
    root.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        _build(temporary, world, sensor, tuple(bands), tuple(gsds), crop_px, seed, png)
        (temporary / "args.json").write_text(json.dumps(args, sort_keys=True))
        try:
            os.rename(temporary, root)  # atomic; an empty root is replaced
        except OSError:
            if not (root / "args.json").is_file():  # not a concurrent build that finished first
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return root

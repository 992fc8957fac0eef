"""Catalogue loaders for hyperspectral sets: EnMAP Potsdam, Indian Pines, MUUFL, Jasper Ridge.

* ``enmap_potsdam``: one EnMAP L2A tile (224 bands, 6 bad bands dropped) with a 6-class label.
* ``indian_pines``: the AVIRIS corrected cube, few-labels pixel protocol (masks per split).
* ``indian_pines_spatial``: the same scene split into west/east halves (an honest spatial score).
* ``muufl``: the MUUFL Gulfport classification crop, truth from its labelled training spectra.
* ``jasper_ridge``: AVIRIS Jasper Ridge with its 4 endmembers and abundance maps (unmixing).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import scipy.io
import torch
from affine import Affine

from rsfm.data.catalogue.base import (
    IGNORE_INDEX,
    DatasetInfo,
    Region,
    check_split,
    chip_sample,
    chip_windows,
    region_split,
    require,
    window_transform,
)
from rsfm.data.catalogue.registry import register_dataset
from rsfm.sensors import bad_band_mask, get_sensor, sensor_from_raster


@functools.lru_cache(maxsize=8)
def _loadmat(path: Path) -> dict[str, Any]:
    return scipy.io.loadmat(path)


def _crop(array: np.ndarray, region: Region) -> np.ndarray:
    """``array[..., rows, cols]`` of a region."""
    return array[..., region.row0 : region.row1, region.col0 : region.col1]


def _labels(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """Codes 1..n -> class ids 0..n-1; 0 (unlabelled) and anything else -> -1."""
    codes = np.asarray(codes, dtype=np.int64)
    return np.where((codes >= 1) & (codes <= n_classes), codes - 1, IGNORE_INDEX)


# ----------------------------------------------------------------------------- EnMAP Potsdam
#: EnMAP-Box Potsdam land-cover level 3, ids 1..6 (enmapbox/exampledata level_3 style order).
ENMAP_CLASSES = ("roof", "pavement", "low vegetation", "tree", "soil", "water")
ENMAP_IMAGE = "enmap_potsdam_tile_128_0_image.tif"
ENMAP_LABEL = "enmap_potsdam_tile_128_0_label.tif"
ENMAP_SCENE_LABEL = "enmap_potsdam_landcover_full_30m.tif"
ENMAP_CHIP = 16
ENMAP_POTSDAM = DatasetInfo(
    name="enmap_potsdam",
    title="EnMAP L2A Potsdam tile (218 good bands, 30 m) with 6-class land cover",
    folder="enmap_potsdam",
    task="segmentation",
    sensors=("enmap",),
    class_names=ENMAP_CLASSES,
    split=(
        "One 32x32 tile split spatially: east half (columns 16-31) test, two 16 px chips; west "
        "half north (rows 0-15) train and south (rows 16-31) val, one 16 px chip each "
        "(region_split with val_fraction 0.5: the usual 25 % would leave val smaller than a chip)."
    ),
    licence="none stated by the repository for these files (EnMAP data: DLR)",
    source="EnMAP-Box/enmap-box @ f9e8f486 : tests/testdata/external/specdeepmap/",
)


def enmap_scene_label(folder: Path) -> tuple[np.ndarray, Any, Affine]:
    """The full-scene 30 m label (200x330) as class ids (-1 unlabelled), its CRS and transform.

    Only the 32x32 tile has imagery here; the tile's label is this label's window at the tile.
    """
    with rasterio.open(require(folder / ENMAP_SCENE_LABEL, "enmap_potsdam")) as src:
        return _labels(src.read(1), len(ENMAP_CLASSES)), src.crs, src.transform


@register_dataset(ENMAP_POTSDAM)
def load_enmap_potsdam(folder: Path, split: str) -> list[dict[str, Any]]:
    """16 px chips of the tile: bad bands (``bbl`` 0) dropped and named in ``bad_bands``."""
    check_split(split)
    path = require(folder / ENMAP_IMAGE, "enmap_potsdam")
    good = bad_band_mask(path)
    file_sensor = sensor_from_raster(path, name="enmap")
    flags = list(zip(file_sensor.bands, good, strict=True))
    sensor = file_sensor.select([b.name for b, ok in flags if ok], "enmap")
    bad = [b.name for b, ok in flags if not ok]
    with rasterio.open(path) as src:
        image, crs, transform, nodata = src.read()[good], src.crs, src.transform, src.nodata
    with rasterio.open(require(folder / ENMAP_LABEL, "enmap_potsdam")) as src:
        mask = _labels(src.read(1), len(ENMAP_CLASSES))
    region = region_split(image.shape[1], image.shape[2], split, val_fraction=0.5)
    return [
        chip_sample(
            _crop(image, w),
            sensor,
            sample_id=f"enmap_potsdam_tile_128_0:{w.row0}:{w.col0}",
            nodata=nodata,
            mask=_crop(mask, w),
            crs=crs,
            transform=window_transform(transform, w.row0, w.col0),
            window=(w.row0, w.row1, w.col0, w.col1),
            bad_bands=list(bad),
        )
        for w in chip_windows(region, ENMAP_CHIP)
    ]


# ------------------------------------------------------------------------------ Indian Pines
INDIAN_PINES_CLASSES = (
    "Alfalfa",
    "Corn-notill",
    "Corn-mintill",
    "Corn",
    "Grass-pasture",
    "Grass-trees",
    "Grass-pasture-mowed",
    "Hay-windrowed",
    "Oats",
    "Soybean-notill",
    "Soybean-mintill",
    "Soybean-clean",
    "Wheat",
    "Woods",
    "Buildings-Grass-Trees-Drives",
    "Stone-Steel-Towers",
)
INDIAN_PINES_SOURCE = (
    "Purdue University (Baumgardner, Biehl, Landgrebe 2015, doi:10.4231/R7RX991C), "
    "Indian_pines_corrected.mat / Indian_pines_gt.mat"
)
INDIAN_PINES_LICENCE = "CC0 as mirrored; cite Purdue (Baumgardner, Biehl, Landgrebe)"
#: Few-labels protocol: (cap, share of the class) for train and val; test = the rest.
INDIAN_PINES_TRAIN, INDIAN_PINES_VAL, INDIAN_PINES_SEED = (30, 0.5), (10, 0.25), 0
INDIAN_PINES = DatasetInfo(
    name="indian_pines",
    title="Indian Pines (AVIRIS, 200 bands, 20 m): 16 crop classes, few-labels pixel split",
    folder="indian_pines",
    task="segmentation",
    sensors=("aviris_indian_pines",),
    class_names=INDIAN_PINES_CLASSES,
    split=(
        "Pixel split (the classic few-labels protocol), one full-scene sample per split whose "
        "mask keeps only that split's pixels: per class a seeded (seed 0) draw of min(30, 50 %) "
        "train and min(10, 25 %) val pixels, every other labelled pixel test. Train and test "
        "pixels are neighbours: see indian_pines_spatial for a spatial score."
    ),
    licence=INDIAN_PINES_LICENCE,
    source=INDIAN_PINES_SOURCE,
    georeferenced=False,
)
INDIAN_PINES_SPATIAL = DatasetInfo(
    name="indian_pines_spatial",
    title="Indian Pines split spatially: west half train/val, east half test",
    folder="indian_pines",
    task="segmentation",
    sensors=("aviris_indian_pines",),
    class_names=INDIAN_PINES_CLASSES,
    split=(
        "region_split of the 145x145 scene: columns 72-144 test; columns 0-71 train (rows "
        "0-108) and val (rows 109-144); one sample per split. Some classes lie on one side only."
    ),
    licence=INDIAN_PINES_LICENCE,
    source=INDIAN_PINES_SOURCE,
    georeferenced=False,
)


def read_indian_pines(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The cube [200,145,145] (uint16 as stored) and ground truth [145,145] (0 = unlabelled)."""
    cube = _loadmat(require(folder / "Indian_pines_corrected.mat", "indian_pines"))
    truth = _loadmat(require(folder / "Indian_pines_gt.mat", "indian_pines"))
    return cube["indian_pines_corrected"].transpose(2, 0, 1), truth["indian_pines_gt"]


def few_label_split(truth: np.ndarray, n_classes: int, seed: int = INDIAN_PINES_SEED) -> np.ndarray:
    """Per pixel 0 train, 1 val, 2 test, -1 unlabelled: the seeded per-class draw.

    Classes are drawn in id order from one ``numpy.random.default_rng(seed)``; a class of n
    pixels gives ``min(30, int(0.5 n))`` train, then ``min(10, int(0.25 n))`` val pixels.
    """
    rng = np.random.default_rng(seed)
    flat = truth.ravel()
    assignment = np.full(flat.shape, -1, dtype=np.int64)
    for code in range(1, n_classes + 1):
        pixels = rng.permutation(np.flatnonzero(flat == code))
        n = len(pixels)
        n_train = min(INDIAN_PINES_TRAIN[0], int(INDIAN_PINES_TRAIN[1] * n))
        n_val = min(INDIAN_PINES_VAL[0], int(INDIAN_PINES_VAL[1] * n))
        assignment[pixels] = 2
        assignment[pixels[:n_train]] = 0
        assignment[pixels[n_train : n_train + n_val]] = 1
    return assignment.reshape(truth.shape)


@register_dataset(INDIAN_PINES)
def load_indian_pines(folder: Path, split: str) -> list[dict[str, Any]]:
    """The full scene, its ``mask`` keeping only this split's labelled pixels."""
    cube, truth = read_indian_pines(folder)
    part = few_label_split(truth, len(INDIAN_PINES_CLASSES)) == ("train", "val", "test").index(
        check_split(split)
    )
    mask = np.where(part, _labels(truth, len(INDIAN_PINES_CLASSES)), IGNORE_INDEX)
    return [
        chip_sample(
            cube,
            "aviris_indian_pines",
            sample_id=f"indian_pines:{split}",
            mask=mask,
            window=(0, truth.shape[0], 0, truth.shape[1]),
        )
    ]


@register_dataset(INDIAN_PINES_SPATIAL)
def load_indian_pines_spatial(folder: Path, split: str) -> list[dict[str, Any]]:
    """The split's region of the scene with all its labelled pixels."""
    cube, truth = read_indian_pines(folder)
    region = region_split(truth.shape[0], truth.shape[1], split)
    return [
        chip_sample(
            _crop(cube, region),
            "aviris_indian_pines",
            sample_id=f"indian_pines:{region.row0}:{region.col0}",
            mask=_crop(_labels(truth, len(INDIAN_PINES_CLASSES)), region),
            window=(region.row0, region.row1, region.col0, region.col1),
        )
    ]


# ------------------------------------------------------------------------------------- MUUFL
MUUFL_CLASSES = (
    "Blue Calibration Panel",
    "Green Calibration Panel",
    "Black Calibration Panel",
    "Trees",
    "Grass",
)
MUUFL_FILE = "an_hsi_img_for_class_demo.mat"
MUUFL = DatasetInfo(
    name="muufl",
    title="MUUFL Gulfport CASI crop (31x20, 72 bands): 5 classes from its labelled spectra",
    folder="hsi_muufl_jasper/muufl_gulfport_subsets",
    task="segmentation",
    sensors=("muufl_casi",),
    class_names=MUUFL_CLASSES,
    split=(
        "region_split of the 31x20 crop: columns 10-19 test; columns 0-9 train (rows 0-22) and "
        "val (rows 23-30); one sample per split. Only 32 pixels are labelled, panels are single "
        "objects: no split holds every class (see the card)."
    ),
    licence="MIT (GatorSense/hsi_toolkit_py, GatorSense/MUUFLGulfport); cite Gader et al. 2013",
    source="GatorSense/hsi_toolkit_py @ 8c5a023b : an_hsi_img_for_class_demo.mat",
    georeferenced=False,
)


def muufl_truth(data: dict[str, Any]) -> np.ndarray:
    """Class ids [H,W] (-1 unlabelled) of the pixels whose spectra are ``train_data``'s.

    Raises:
        ValueError: If a class name differs from :data:`MUUFL_CLASSES`, a labelled spectrum is
            not a pixel of the image, or a pixel carries two classes.
    """
    image = np.asarray(data["hsi_sub"], dtype=np.float64)
    flat = image.reshape(-1, image.shape[-1])
    truth = np.full(flat.shape[0], IGNORE_INDEX, dtype=np.int64)
    for index, entry in enumerate(data["train_data"][0]):
        name = str(np.ravel(entry["name"])[0])
        if name != MUUFL_CLASSES[index]:
            raise ValueError(f"MUUFL class {index} is {name!r}, expected {MUUFL_CLASSES[index]!r}")
        for spectrum in np.asarray(entry["Spectra"], dtype=np.float64).T:
            hits = np.flatnonzero((flat == spectrum).all(axis=1))
            if hits.size == 0:
                raise ValueError(f"MUUFL {name!r}: a labelled spectrum is not a pixel of hsi_sub")
            if ((truth[hits] != IGNORE_INDEX) & (truth[hits] != index)).any():
                raise ValueError(f"MUUFL {name!r}: a pixel is labelled with two classes")
            truth[hits] = index
    return truth.reshape(image.shape[:2])


@register_dataset(MUUFL)
def load_muufl(folder: Path, split: str) -> list[dict[str, Any]]:
    """The split's region of the crop (reflectance) with its mask and the file's wavelengths."""
    data = _loadmat(require(folder / MUUFL_FILE, "muufl"))
    image = np.asarray(data["hsi_sub"], dtype=np.float32).transpose(2, 0, 1)
    truth = muufl_truth(data)
    region = region_split(truth.shape[0], truth.shape[1], check_split(split))
    return [
        chip_sample(
            _crop(image, region),
            "muufl_casi",
            sample_id=f"muufl_class_demo:{region.row0}:{region.col0}",
            wavelengths=np.ravel(data["wavlength"]).astype(np.float32),
            mask=_crop(truth, region),
            window=(region.row0, region.row1, region.col0, region.col1),
        )
    ]


# ------------------------------------------------------------------------------ Jasper Ridge
JASPER_ENDMEMBERS = ("tree", "water", "dirt", "road")  # the file's cood: 1-tree .. 4-road
JASPER_FILE = "jasperRidge2_R198.mat"
JASPER_RIDGE = DatasetInfo(
    name="jasper_ridge",
    title="Jasper Ridge (AVIRIS, 198 bands, 100x100): 4 endmembers + abundances",
    folder="hsi_muufl_jasper/jasper_ridge",
    task="unmixing",
    sensors=("aviris_jasper_ridge",),
    class_names=JASPER_ENDMEMBERS,
    split=(
        "region_split of the 100x100 scene: columns 50-99 test; columns 0-49 train (rows 0-74) "
        "and val (rows 75-99); one sample per split. The endmember spectra (one set for the "
        "scene) ride along with every sample."
    ),
    licence="none stated by the repository (Jasper Ridge AVIRIS data, NASA/JPL)",
    source="MeiShaohui/Spectral-Variability-Augmented-Sparse-Unmixing @ 9e3e2264 : "
    "jasperRidge2_R198.mat",
    georeferenced=False,
)


def read_jasper(folder: Path) -> dict[str, Any]:
    """Image [198,H,W] (as stored), abundances [4,H,W], endmembers [4,198], names, max value.

    The .mat stores pixels as columns in MATLAB (column-major) order: pixel p is at row
    ``p % nRow``, column ``p // nRow``.

    Raises:
        ValueError: If the endmember names are not :data:`JASPER_ENDMEMBERS`, or the kept
            AVIRIS bands (``SlectBands``) are not those of ``aviris_jasper_ridge``.
    """
    data = _loadmat(require(folder / JASPER_FILE, "jasper_ridge"))
    rows, cols = int(data["nRow"].item()), int(data["nCol"].item())
    names = tuple(str(np.ravel(c)[0]).split("-", 1)[1] for c in np.ravel(data["cood"]))
    if names != JASPER_ENDMEMBERS:
        raise ValueError(f"{folder / JASPER_FILE}: endmembers {names}, not {JASPER_ENDMEMBERS}")
    kept = [f"B{int(b):03d}" for b in np.ravel(data["SlectBands"])]
    if kept != get_sensor("aviris_jasper_ridge").band_names:
        raise ValueError(f"{folder / JASPER_FILE}: SlectBands differ from aviris_jasper_ridge")

    def grid(values: np.ndarray) -> np.ndarray:
        return np.asarray(values).reshape(-1, cols, rows).transpose(0, 2, 1)

    return {
        "image": grid(data["Y"]).astype(np.float32),
        "abundances": grid(data["A"]).astype(np.float32),
        "endmembers": np.asarray(data["M"], dtype=np.float32).T,
        "max_value": float(data["maxValue"].item()),
    }


@register_dataset(JASPER_RIDGE)
def load_jasper_ridge(folder: Path, split: str) -> list[dict[str, Any]]:
    """The split's region: ``image`` (DN, ~reflectance x ``max_value``) and ``abundances``.

    ``endmembers`` [4,198] are on the reflectance scale: ``image / max_value ~ abundances .
    endmembers`` per pixel.
    """
    data = read_jasper(folder)
    region = region_split(data["image"].shape[1], data["image"].shape[2], check_split(split))
    return [
        chip_sample(
            _crop(data["image"], region),
            "aviris_jasper_ridge",
            sample_id=f"jasper_ridge:{region.row0}:{region.col0}",
            abundances=torch.from_numpy(np.ascontiguousarray(_crop(data["abundances"], region))),
            endmembers=torch.from_numpy(data["endmembers"]),
            endmember_names=list(JASPER_ENDMEMBERS),
            max_value=data["max_value"],
            window=(region.row0, region.row1, region.col0, region.col1),
        )
    ]

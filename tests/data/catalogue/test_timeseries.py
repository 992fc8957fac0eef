"""The eo-learn NDVI time-series loader on the real EOPatch in ../shared/data (skips if absent)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rsfm.data.catalogue import SPLITS, DatasetNotFoundError, dataset_info, load_dataset
from rsfm.data.catalogue.timeseries import (
    LULC_CLASSES,
    SENTINEL2_NDVI,
    check_lulc_classes,
    load_eolearn_ndvi,
    read_bbox,
)
from rsfm.sensors import get_sensor

pytestmark = pytest.mark.shared_data

FOLDER = "eolearn_ndvi_timeseries"
PATCH = f"{FOLDER}/TestEOPatch"
SHAPE = (101, 100)
Samples = dict[str, list[dict[str, Any]]]


@pytest.fixture(scope="module")
def ndvi(shared_data: Path) -> Samples:
    return {
        split: load_dataset("eolearn_ndvi", split, root=shared_data).samples for split in SPLITS
    }


def raw(shared_data: Path, relative: str) -> np.ndarray:
    """One EOPatch array with eo-learn's trailing channel axis dropped."""
    return np.load(shared_data / PATCH / relative)[..., 0]


def check_regions(by_split: Samples) -> None:
    """Each split non-empty; ids unique; the windows tile the patch exactly once."""
    assert all(by_split[split] for split in SPLITS)
    ids = [s["id"] for split in SPLITS for s in by_split[split]]
    assert len(ids) == len(set(ids))
    count = np.zeros(SHAPE, dtype=int)
    for split in SPLITS:
        for s in by_split[split]:
            r0, r1, c0, c1 = s["window"]
            count[r0:r1, c0:c1] += 1
    assert (count == 1).all(), "a pixel is in two splits or in none"


def test_sensor_and_info() -> None:
    assert get_sensor("sentinel2_ndvi") is SENTINEL2_NDVI
    assert SENTINEL2_NDVI.band_names == ["NDVI"]
    s2 = get_sensor("sentinel2_l2a")
    red, nir = (s2.wavelengths[s2.band_names.index(b)] for b in ("B04", "B08"))
    assert SENTINEL2_NDVI.wavelengths[0] == pytest.approx((red + nir) / 2, abs=0.01)
    assert np.isfinite(SENTINEL2_NDVI.wavelengths).all() and SENTINEL2_NDVI.gsd == 10.0
    info = dataset_info("eolearn_ndvi")
    assert info.task == "timeseries" and info.sensors == ("sentinel2_ndvi",)
    assert info.class_names == LULC_CLASSES and info.num_classes == 10
    assert info.georeferenced


def test_samples_shapes_and_contract(ndvi: Samples) -> None:
    shapes = {split: tuple(ndvi[split][0]["image"].shape) for split in SPLITS}
    assert shapes == {"train": (1, 76, 50), "val": (1, 25, 50), "test": (1, 101, 50)}
    waves = torch.from_numpy(SENTINEL2_NDVI.wavelengths)
    for split in SPLITS:
        (s,) = ndvi[split]
        h, w = s["image"].shape[1:]
        assert s["image"].dtype == torch.float32 and s["sensor"] == "sentinel2_ndvi"
        assert torch.equal(s["wavelengths"], waves) and s["image"].shape[0] == len(waves)
        assert s["time_series"].shape == (68, h, w) and s["time_series"].dtype == torch.float32
        assert s["clear"].shape == (68, h, w) and s["clear"].dtype == torch.bool
        assert s["dem"].shape == (h, w) and 600 < float(s["dem"].mean()) < 850
        assert s["mask"].shape == (h, w) and s["mask"].dtype == torch.int64
        assert -0.2 < float(s["image"].min()) and float(s["image"].max()) < 0.9
        assert s["valid"].all()  # every pixel has at least 37 cloud-free dates
        assert (s["clear"].sum(0) >= 37).all()


def test_dates_are_iso_and_ordered(ndvi: Samples, shared_data: Path) -> None:
    stamps = json.loads((shared_data / PATCH / "timestamps.json").read_text())
    for split in SPLITS:
        dates = ndvi[split][0]["dates"]
        assert dates == [datetime.fromisoformat(d).isoformat() for d in stamps]
        parsed = [datetime.fromisoformat(d) for d in dates]
        assert parsed == sorted(parsed) and len(parsed) == 68
    assert dates[0] == "2015-07-11T10:00:08" and dates[-1] == "2017-12-22T10:04:15"


def test_split_is_spatial_and_covers_the_patch_once(ndvi: Samples) -> None:
    check_regions(ndvi)
    assert ndvi["train"][0]["window"] == (0, 76, 0, 50)
    assert ndvi["val"][0]["window"] == (76, 101, 0, 50)
    assert ndvi["test"][0]["window"] == (0, 101, 50, 100)


def test_a_loader_ignoring_the_split_fails(shared_data: Path) -> None:
    def broken(folder: Path, split: str) -> list[dict]:
        return load_eolearn_ndvi(folder, "train")

    with pytest.raises(AssertionError):
        check_regions({split: broken(shared_data / FOLDER, split) for split in SPLITS})


def test_mask_is_lulc_shifted_with_no_data_unlabelled(ndvi: Samples, shared_data: Path) -> None:
    lulc = raw(shared_data, "mask_timeless/LULC.npy").astype(np.int64)
    for split in SPLITS:
        (s,) = ndvi[split]
        r0, r1, c0, c1 = s["window"]
        expected = np.where(lulc[r0:r1, c0:c1] == 0, -1, lulc[r0:r1, c0:c1] - 1)
        np.testing.assert_array_equal(s["mask"].numpy(), expected)
        assert set(s["mask"].unique().tolist()) <= {-1, *range(len(LULC_CLASSES))}
    classes = {split: set(ndvi[split][0]["mask"].unique().tolist()) - {-1} for split in SPLITS}
    # forest, grassland, shrubland, artificial surface; cultivated land (0) only in test
    assert classes["train"] == {1, 2, 3, 7} and classes["test"] == {0, 1, 2, 3, 7}


def test_image_is_the_cloud_free_median(ndvi: Samples, shared_data: Path) -> None:
    series = raw(shared_data, "data/NDVI.npy")
    cloud = raw(shared_data, "mask/CLM.npy").astype(bool)
    (s,) = ndvi["test"]
    r0, _, c0, _ = s["window"]
    for row, col in [(0, 0), (40, 17), (100, 49)]:
        clear = ~cloud[:, r0 + row, c0 + col]
        expected = np.median(series[clear, r0 + row, c0 + col])
        assert float(s["image"][0, row, col]) == pytest.approx(float(expected), abs=1e-6)
        np.testing.assert_array_equal(s["time_series"][:, row, col], series[:, r0 + row, c0 + col])
        np.testing.assert_array_equal(s["clear"][:, row, col].numpy(), clear)


def test_georeferencing_from_the_bbox(ndvi: Samples, shared_data: Path) -> None:
    crs, (west, south, east, north) = read_bbox(shared_data / PATCH / "bbox.geojson")
    assert crs.to_epsg() == 32633
    xres, yres = (east - west) / SHAPE[1], (north - south) / SHAPE[0]
    assert 9.99 < xres < 10.01 and 9.99 < yres < 10.01
    for split in SPLITS:
        (s,) = ndvi[split]
        r0, r1, c0, c1 = s["window"]
        t = s["transform"]
        assert s["crs"] == crs
        assert t.a == pytest.approx(xres) and t.e == pytest.approx(-yres)
        assert t.c == pytest.approx(west + c0 * xres) and t.f == pytest.approx(north - r0 * yres)
        left, bottom, right, top = s["bounds"]
        assert right == pytest.approx(west + c1 * xres) and bottom == pytest.approx(
            north - r1 * yres
        )
    assert ndvi["test"][0]["bounds"][2] == pytest.approx(east)
    assert ndvi["val"][0]["bounds"][1] == pytest.approx(south)


def test_invalid_pixels_are_zero_and_unlabelled(shared_data: Path, tmp_path: Path) -> None:
    patch = tmp_path / "TestEOPatch"
    source = shared_data / PATCH
    patch.mkdir()
    for path in sorted(source.rglob("*")):
        target = patch / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif path.name != "CLM.npy":
            target.symlink_to(path)
    cloud = np.load(source / "mask" / "CLM.npy")
    cloud[:, 3:5, 7:9] = 1  # always cloudy: no clear date
    np.save(patch / "mask" / "CLM.npy", cloud)
    (s,) = load_eolearn_ndvi(tmp_path, "train")
    assert not s["valid"][3:5, 7:9].any() and s["valid"].sum() == 76 * 50 - 4
    assert (s["image"][:, 3:5, 7:9] == 0).all() and (s["mask"][3:5, 7:9] == -1).all()
    assert (s["time_series"][:, 3:5, 7:9] == 0).all() and not s["clear"][:, 3:5, 7:9].any()


def test_class_file_is_checked_as_text(tmp_path: Path, shared_data: Path) -> None:
    assert (shared_data / FOLDER / "lulc_classes.py").stat().st_size == 0  # shipped empty
    path = tmp_path / "lulc_classes.py"
    names = ["no data", *LULC_CLASSES]
    path.write_text(
        "lulc_classes = {" + ",\n".join(f"'{n}': {i}" for i, n in enumerate(names)) + "}\n"
    )
    check_lulc_classes(path)
    path.write_text("lulc_classes = {'no data': 0, 'forest': 1}\n")
    with pytest.raises(ValueError, match="differ"):
        check_lulc_classes(path)


def test_missing_patch_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="RSFM_DATA_ROOT"):
        load_eolearn_ndvi(tmp_path, "train")

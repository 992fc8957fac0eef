"""The Landsat catalogue loaders on the real samples in ../shared/data (skipped when absent)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from rsfm.data.catalogue import (
    SPLITS,
    DatasetNotFoundError,
    chip_sample,
    dataset_info,
    load_dataset,
)
from rsfm.data.catalogue.landsat import (
    LANDSAT8_NOPAN,
    LANDSAT8_RGBN,
    cloud38_pass,
    load_cloud38,
    load_landsat8_alabama,
    load_landsat8_brazil,
)
from rsfm.sensors import get_sensor

pytestmark = pytest.mark.shared_data

REPO = Path(__file__).resolve().parents[3]
BRAZIL = "landsat8/LC08_232066_20190727.tif"
EMPTY_PATCHES = {"011002", "044010", "059014"}  # 38-Cloud's all-zero border patches

Samples = dict[str, list[dict[str, Any]]]


def splits_of(loader: Callable[[Path, str], list[dict]], folder: Path) -> Samples:
    """``{split: samples}`` of a loader over ``folder``."""
    return {split: loader(folder, split) for split in SPLITS}


def check_contract(samples: list[dict[str, Any]], sensor: str) -> None:
    """Each sample keeps the sample-dict contract, with the sensor's own wavelengths."""
    waves = torch.from_numpy(get_sensor(sensor).wavelengths)
    for s in samples:
        image = s["image"]
        assert image.dtype == torch.float32 and image.ndim == 3
        assert image.shape[0] == len(s["wavelengths"]) == len(waves)
        assert torch.equal(s["wavelengths"], waves) and s["sensor"] == sensor
        assert s["valid"].dtype == torch.bool and s["valid"].shape == image.shape[1:]
        assert (image[:, ~s["valid"]] == 0).all()
        if "mask" in s:
            assert s["mask"].dtype == torch.int64
            assert (s["mask"][~s["valid"]] == -1).all()


def check_disjoint(by_split: Samples, shape: tuple[int, int] | None = None) -> None:
    """Every split non-empty; no sample id, and (scenes) no pixel, in two splits."""
    ids = [s["id"] for split in SPLITS for s in by_split[split]]
    assert all(by_split[split] for split in SPLITS)
    assert len(ids) == len(set(ids))
    if shape is not None:
        owner = np.full(shape, -1)
        for k, split in enumerate(SPLITS):
            for s in by_split[split]:
                r0, r1, c0, c1 = s["window"]
                assert np.isin(owner[r0:r1, c0:c1], (-1, k)).all(), f"{s['id']} in two splits"
                owner[r0:r1, c0:c1] = k


def check_georef(samples: list[dict[str, Any]], path: Path) -> None:
    """Each chip's transform is the file's at the chip's offset, and its pixels are the file's."""
    with rasterio.open(path) as src:
        for s in samples:
            col, row = ~src.transform * (s["transform"].c, s["transform"].f)
            assert (row, col) == pytest.approx((round(row), round(col)), abs=1e-9)
            height, width = s["image"].shape[1:]
            window = Window(round(col), round(row), width, height)
            assert s["transform"] == src.window_transform(window)
            assert s["window"] == (round(row), round(row) + height, round(col), round(col) + width)
            assert s["crs"] == src.crs
            raw = src.read(window=window).astype(np.float32)
            np.testing.assert_array_equal(
                s["image"].numpy()[:, s["valid"].numpy()], raw[:, s["valid"].numpy()]
            )


# --------------------------------------------------------------------------- landsat8_brazil


@pytest.fixture(scope="module")
def brazil(shared_data: Path) -> Samples:
    return {
        split: load_dataset("landsat8_brazil", split, root=shared_data).samples for split in SPLITS
    }


def test_brazil_chips_sensor_and_counts(brazil: Samples) -> None:
    assert {k: len(v) for k, v in brazil.items()} == {"train": 9, "val": 6, "test": 12}
    for samples in brazil.values():
        check_contract(samples, "landsat8_sr")
        assert all(s["image"].shape == (6, 64, 64) and s["gsd"] == 30.0 for s in samples)
    info = dataset_info("landsat8_brazil")
    assert info.task == "pretraining" and info.sensors == ("landsat8_sr",) and not info.class_names


def test_brazil_splits_are_spatial_and_disjoint(brazil: Samples) -> None:
    check_disjoint(brazil, shape=(235, 318))
    assert all(s["window"][3] <= 159 for split in ("train", "val") for s in brazil[split])
    assert all(s["window"][2] >= 159 for s in brazil["test"])
    assert max(s["window"][1] for s in brazil["train"]) <= min(
        s["window"][0] for s in brazil["val"]
    )


def test_brazil_georeferencing_and_units(brazil: Samples, shared_data: Path) -> None:
    for samples in brazil.values():
        check_georef(samples, shared_data / BRAZIL)
    first = brazil["train"][0]
    assert first["transform"].c == 393465.0 and first["transform"].f == -962925.0
    # reflectance x 10000: vegetated NIR (B5) well above red (B4)
    images = torch.stack([s["image"] for s in brazil["train"]])
    assert 1500 < images[:, 3].median() < 4000 and images[:, 2].median() < 1000


def test_brazil_nodata_pixels_are_invalid(shared_data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "landsat8"
    folder.mkdir()
    with rasterio.open(shared_data / BRAZIL) as src:
        profile, data = src.profile, src.read()
    data[2, 10:20, 30:40] = -9999  # one band's nodata is enough
    with rasterio.open(folder / Path(BRAZIL).name, "w", **profile) as dst:
        dst.write(data)
    chip = load_landsat8_brazil(folder, "train")[0]
    assert chip["id"].endswith("_r0_c0")
    assert not chip["valid"][10:20, 30:40].any() and chip["valid"].sum() == 64 * 64 - 100
    assert (chip["image"][:, 10:20, 30:40] == 0).all()


def test_a_loader_ignoring_the_split_fails(shared_data: Path) -> None:
    def broken(folder: Path, split: str) -> list[dict]:
        return load_landsat8_brazil(folder, "train")

    with pytest.raises(AssertionError):
        check_disjoint(splits_of(broken, shared_data / "landsat8"), shape=(235, 318))


def test_a_loader_with_the_scene_transform_on_every_chip_fails(shared_data: Path) -> None:
    samples = load_landsat8_brazil(shared_data / "landsat8", "test")
    with rasterio.open(shared_data / BRAZIL) as src:
        broken = [{**s, "transform": src.transform} for s in samples]
    with pytest.raises(AssertionError):
        check_georef(broken, shared_data / BRAZIL)


def test_missing_files_say_how_to_fix(tmp_path: Path) -> None:
    for loader in (load_landsat8_brazil, load_landsat8_alabama, load_cloud38):
        with pytest.raises(DatasetNotFoundError, match="RSFM_DATA_ROOT"):
            loader(tmp_path, "train")


# --------------------------------------------------------------------------- landsat8_alabama


@pytest.fixture(scope="module")
def alabama(shared_data: Path) -> Samples:
    return {
        split: load_dataset("landsat8_alabama", split, root=shared_data).samples for split in SPLITS
    }


def test_alabama_sensor_is_oli_tirs_without_pan(alabama: Samples) -> None:
    full = get_sensor("landsat8_oli_tirs")
    assert LANDSAT8_NOPAN.band_names == [b for b in full.band_names if b != "B8"]
    keep = [i for i, b in enumerate(full.band_names) if b != "B8"]
    np.testing.assert_array_equal(LANDSAT8_NOPAN.wavelengths, full.wavelengths[keep])
    assert get_sensor("landsat8_oli_tirs_nopan") is LANDSAT8_NOPAN
    assert {k: len(v) for k, v in alabama.items()} == {"train": 40, "val": 15, "test": 50}
    for samples in alabama.values():
        check_contract(samples, "landsat8_oli_tirs_nopan")
        assert all(s["image"].shape == (10, 64, 64) for s in samples)
    assert dataset_info("landsat8_alabama").sensors == ("landsat8_oli_tirs_nopan",)


def test_alabama_splits_and_georeferencing(alabama: Samples, shared_data: Path) -> None:
    check_disjoint(alabama, shape=(603, 627))
    folder = shared_data / "landsat8_alabama_pan"
    with rasterio.open(folder / "l8_B1.tif") as src:
        grid = src.transform
    for samples in alabama.values():
        for s in samples:
            r0, _, c0, _ = s["window"]
            assert s["transform"] == grid * rasterio.Affine.translation(c0, r0)
    # band order: image band 9 is B11 (thermal), read straight from its own file
    chip = alabama["test"][3]
    r0, r1, c0, c1 = chip["window"]
    with rasterio.open(folder / "l8_B11.tif") as src:
        b11 = src.read(1, window=Window(c0, r0, c1 - c0, r1 - r0))
    np.testing.assert_array_equal(chip["image"][9].numpy(), b11.astype(np.float32))


def test_alabama_pan_is_twice_the_chip_on_its_own_grid(alabama: Samples, shared_data: Path) -> None:
    with rasterio.open(shared_data / "landsat8_alabama_pan" / "l8_B8.tif") as src:
        pan, pan_grid = src.read(1), src.transform
    for samples in alabama.values():
        for s in samples:
            h, w = s["image"].shape[1:]
            assert s["pan"].shape == (1, 2 * h, 2 * w) and s["pan"].dtype == torch.float32
            assert s["pan_gsd"] == 15.0 and s["pan_transform"].a == 15.0
            # the published pan grid sits half a pan pixel north-west of the 30 m grid
            dx = s["pan_transform"].c - s["transform"].c
            dy = s["pan_transform"].f - s["transform"].f
            assert (dx, dy) == (-7.5, 7.5)
            col, row = ~pan_grid * (s["pan_transform"].c, s["pan_transform"].f)
            row, col = round(row), round(col)
            assert (row, col) == (2 * s["window"][0], 2 * s["window"][2])
            np.testing.assert_array_equal(
                s["pan"][0].numpy(), pan[row : row + 2 * h, col : col + 2 * w]
            )


def test_alabama_qa_fill_is_invalid(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "landsat8_alabama_pan"
    for path in source.glob("l8_*.tif"):
        if path.name != "l8_BQA.tif":
            (tmp_path / path.name).symlink_to(path)
    with rasterio.open(source / "l8_BQA.tif") as src:
        profile, qa = src.profile, src.read()
    assert (qa & 1).sum() == 0  # the published scene has no fill
    qa[0, :5, :7] = 1  # designated fill
    with rasterio.open(tmp_path / "l8_BQA.tif", "w", **profile) as dst:
        dst.write(qa)
    chip = load_landsat8_alabama(tmp_path, "train")[0]
    assert chip["window"][:3:2] == (0, 0)
    assert not chip["valid"][:5, :7].any() and chip["valid"].sum() == 64 * 64 - 35
    assert (chip["image"][:, :5, :7] == 0).all() and (chip["qa"][:5, :7] == 1).all()


def test_alabama_prepare_writes_a_tagged_cog(shared_data: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "landsat8_alabama_prepare", REPO / "datasets" / "landsat8_alabama" / "prepare.py"
    )
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    out = tmp_path / "out" / "alabama.tif"
    prepare.main([str(shared_data / "landsat8_alabama_pan"), "--out", str(out)])
    from rsfm.sensors import sensor_from_raster

    sensor = sensor_from_raster(out)
    assert sensor.band_names == LANDSAT8_NOPAN.band_names and sensor.gsd == 30.0
    np.testing.assert_array_equal(sensor.wavelengths, LANDSAT8_NOPAN.wavelengths)
    with rasterio.open(out) as ms, rasterio.open(out.with_name("alabama_pan.tif")) as pan:
        assert ms.count == 10 and ms.dtypes[0] == "uint16" and ms.crs.to_epsg() == 32616
        assert pan.shape == (1207, 1254) and pan.transform.a == 15.0
        chip = load_landsat8_alabama(shared_data / "landsat8_alabama_pan", "val")[0]
        r0, r1, c0, c1 = chip["window"]
        stacked = ms.read(window=Window(c0, r0, c1 - c0, r1 - r0)).astype(np.float32)
        np.testing.assert_array_equal(stacked, chip["image"].numpy())
    assert out.with_name("alabama_qa.tif").is_file()
    assert not list(out.parent.glob(".*.tmp"))


# --------------------------------------------------------------------------- cloud38


@pytest.fixture(scope="module")
def cloud38(shared_data: Path) -> Samples:
    return {split: load_dataset("cloud38", split, root=shared_data).samples for split in SPLITS}


def cloud_fraction(samples: list[dict[str, Any]]) -> float:
    """Share of cloud among the valid labelled pixels of ``samples``."""
    labels = torch.cat([s["mask"][s["valid"]] for s in samples])
    return float(labels.float().mean())


def test_cloud38_sensor_classes_and_counts(cloud38: Samples) -> None:
    assert LANDSAT8_RGBN.band_names == ["B2", "B3", "B4", "B5"]
    np.testing.assert_array_equal(LANDSAT8_RGBN.wavelengths, [482.5, 562.5, 655.0, 865.0])
    info = dataset_info("cloud38")
    assert info.class_names == ("clear", "cloud") and info.task == "segmentation"
    assert not info.georeferenced
    assert {k: len(v) for k, v in cloud38.items()} == {"train": 8, "val": 2, "test": 2}
    for samples in cloud38.values():
        check_contract(samples, "landsat8_l1_rgbn")
        for s in samples:
            assert s["image"].shape == (4, 384, 384) and "crs" not in s
            assert set(s["mask"].unique().tolist()) <= {-1, 0, 1}


def test_cloud38_splits_by_orbit_pass(cloud38: Samples) -> None:
    check_disjoint(cloud38)
    passes = {split: {cloud38_pass(s["id"]) for s in cloud38[split]} for split in SPLITS}
    assert not (passes["train"] & passes["val"] or passes["train"] & passes["test"])
    assert not passes["val"] & passes["test"]
    assert cloud38_pass("gt_patch_51_3_by_7_LC08_L1TP_064017_20160420_20170223_01_T1") == (
        "064_20160420"
    )


def test_cloud38_cloud_fraction_per_split(cloud38: Samples) -> None:
    fractions = {split: cloud_fraction(cloud38[split]) for split in SPLITS}
    assert all(0.0 < f < 1.0 for f in fractions.values()), fractions
    assert fractions["train"] == pytest.approx(0.5398, abs=1e-3)
    assert fractions["val"] == pytest.approx(0.4968, abs=1e-3)
    assert fractions["test"] == pytest.approx(0.7574, abs=1e-3)


def raw_bands(folder: Path, key: str) -> np.ndarray:
    """The four published band files of a 38-Cloud patch, stacked B2..B5 (blue first)."""
    raw = []
    for band in ("blue", "green", "red", "nir"):
        with rasterio.open(folder / f"train_{band}" / f"{band}_{key}.TIF") as src:
            raw.append(src.read(1))
    return np.stack(raw).astype(np.float32)


def check_cloud38_nodata(samples: list[dict[str, Any]], folder: Path) -> None:
    """DN 0 in any band of the raw files is exactly the invalid set; bands in B2..B5 order."""
    for s in samples:
        raw = raw_bands(folder, s["id"])
        np.testing.assert_array_equal(s["valid"].numpy(), (raw != 0).all(axis=0))
        np.testing.assert_array_equal(s["image"].numpy(), raw)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_cloud38_border_pixels_are_invalid(cloud38: Samples, shared_data: Path) -> None:
    folder = shared_data / "cloud38_landsat8"
    samples = [s for split in SPLITS for s in cloud38[split]]
    check_cloud38_nodata(samples, folder)
    empty = [s for s in samples if s["id"].split("_")[-5] in EMPTY_PATCHES]
    train_ids = {s["id"] for s in cloud38["train"]}
    assert len(empty) == 3 and all(s["id"] in train_ids for s in empty)
    for s in empty:
        assert not s["valid"].any() and (s["mask"] == -1).all() and (s["image"] == 0).all()
    border = next(s for s in samples if "011247" in s["id"])
    assert 0.06 < 1 - float(border["valid"].float().mean()) < 0.08
    assert (border["mask"][~border["valid"]] == -1).all()
    assert sum(bool(s["valid"].any()) for s in samples) == 9
    # a loader that forgets "DN 0 = nodata" is caught
    raw = raw_bands(folder, border["id"])
    broken = [chip_sample(raw, LANDSAT8_RGBN, sample_id=border["id"])]
    with pytest.raises(AssertionError):
        check_cloud38_nodata(broken, folder)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_cloud38_gt_values_are_checked(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "cloud38_landsat8"
    for band_dir in source.iterdir():
        (tmp_path / band_dir.name).mkdir()
        for path in band_dir.iterdir():
            (tmp_path / band_dir.name / path.name).symlink_to(path)
    link = next(p for p in sorted((tmp_path / "train_gt").iterdir()) if "064014" in p.name)
    with rasterio.open(link) as src:
        profile, gt = src.profile, src.read()
    link.unlink()
    gt[0, 0, 0] = 7
    with rasterio.open(link, "w", **profile) as dst:
        dst.write(gt)
    with pytest.raises(ValueError, match="expected 0 / 255"):
        load_cloud38(tmp_path, "train")

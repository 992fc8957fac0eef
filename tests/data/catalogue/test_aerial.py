"""The aerial / VHR catalogue loaders on the real samples in ../shared/data (skip when absent)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from rsfm.data.catalogue import SPLITS, DatasetNotFoundError, dataset_info, load_dataset
from rsfm.data.catalogue.aerial import (
    CHESAPEAKE_CLASSES,
    NAIP_FILE,
    NEON_HSI,
    NEON_RGB,
    chesapeake_mask,
    chesapeake_partition,
    load_chesapeake,
    load_naip,
    load_neon_harv,
    load_rsicd,
    load_spacenet6,
    sar_db,
)
from rsfm.sensors import get_sensor

pytestmark = pytest.mark.shared_data

Samples = dict[str, list[dict[str, Any]]]


def splits_of(name: str, root: Path) -> Samples:
    """``{split: samples}`` of a registered dataset."""
    return {split: load_dataset(name, split, root=root).samples for split in SPLITS}


def check_contract(samples: list[dict[str, Any]], sensor: str) -> None:
    """The sample-dict contract, with the registered sensor's wavelengths."""
    waves = torch.from_numpy(get_sensor(sensor).wavelengths)
    for s in samples:
        image = s["image"]
        assert image.dtype == torch.float32 and image.ndim == 3
        assert image.shape[0] == len(s["wavelengths"]) == len(waves)
        assert torch.equal(s["wavelengths"], waves) and s["sensor"] == sensor
        assert s["valid"].dtype == torch.bool and s["valid"].shape == image.shape[1:]
        assert torch.isfinite(image).all() and (image[:, ~s["valid"]] == 0).all()
        if "mask" in s:
            assert s["mask"].dtype == torch.int64 and (s["mask"][~s["valid"]] == -1).all()


def check_disjoint(by_split: Samples, shape: tuple[int, int]) -> None:
    """Every split non-empty; no sample id, and no pixel of the scene, in two splits."""
    assert all(by_split[split] for split in SPLITS)
    ids = [s["id"] for split in SPLITS for s in by_split[split]]
    assert len(ids) == len(set(ids))
    owner = np.full(shape, -1)
    for k, split in enumerate(SPLITS):
        for s in by_split[split]:
            r0, r1, c0, c1 = s["window"]
            assert np.isin(owner[r0:r1, c0:c1], (-1, k)).all(), f"{s['id']} in two splits"
            owner[r0:r1, c0:c1] = k


def check_georef(samples: list[dict[str, Any]], path: Path, key: str = "image") -> None:
    """Each sample's transform and CRS are the file's at its window; its pixels are the file's."""
    with rasterio.open(path) as src:
        for s in samples:
            r0, r1, c0, c1 = s["window"]
            window = Window(c0, r0, c1 - c0, r1 - r0)
            assert s["transform"] == src.window_transform(window) and s["crs"] == src.crs
            valid = s["valid"].numpy()
            raw = src.read(window=window).astype(np.float32)
            np.testing.assert_array_equal(s[key].numpy()[:, valid], raw[:, valid])


# ------------------------------------------------------------------------------------ NAIP


@pytest.fixture(scope="module")
def naip(shared_data: Path) -> Samples:
    return splits_of("naip", shared_data)


def test_naip_chips_bands_and_gsd(naip: Samples) -> None:
    assert {k: len(v) for k, v in naip.items()} == {"train": 72, "val": 24, "test": 96}
    for samples in naip.values():
        check_contract(samples, "naip")
        assert all(s["image"].shape == (4, 64, 64) and s["gsd"] == 5.0 for s in samples)
        assert all(s["valid"].all() for s in samples)  # no 0 (nodata) pixel in this scene
    info = dataset_info("naip")
    assert info.task == "pretraining" and not info.class_names and info.georeferenced


def test_naip_split_is_spatial_and_georeferenced(naip: Samples, shared_data: Path) -> None:
    check_disjoint(naip, shape=(723, 934))
    assert all(s["window"][3] <= 467 for split in ("train", "val") for s in naip[split])
    assert all(s["window"][2] >= 467 for s in naip["test"])
    for samples in naip.values():
        check_georef(samples, shared_data / "naip_opengeos" / NAIP_FILE)
    assert str(naip["train"][0]["crs"]) == "EPSG:26914"
    # band 4 is NIR: brighter than red over this agricultural scene
    images = torch.stack([s["image"] for s in naip["train"]])
    assert images[:, 3].mean() > images[:, 0].mean()


def test_a_loader_ignoring_the_split_fails(shared_data: Path) -> None:
    def broken(folder: Path, split: str) -> list[dict]:
        return load_naip(folder, "train")

    leaky = {split: broken(shared_data / "naip_opengeos", split) for split in SPLITS}
    with pytest.raises(AssertionError):
        check_disjoint(leaky, shape=(723, 934))


def test_a_loader_with_the_scene_transform_on_every_chip_fails(naip: Samples, shared_data: Path):
    with rasterio.open(shared_data / "naip_opengeos" / NAIP_FILE) as src:
        broken = [{**s, "transform": src.transform} for s in naip["test"]]
    with pytest.raises(AssertionError):
        check_georef(broken, shared_data / "naip_opengeos" / NAIP_FILE)


def test_missing_files_say_how_to_fix(tmp_path: Path) -> None:
    for loader in (load_naip, load_chesapeake, load_neon_harv, load_spacenet6, load_rsicd):
        with pytest.raises(DatasetNotFoundError, match="RSFM_DATA_ROOT"):
            loader(tmp_path, "test")


# ------------------------------------------------------------------------------ Chesapeake


def test_chesapeake_follows_default_partition(shared_data: Path) -> None:
    folder = shared_data / "chesapeake_geobench" / "cvpr_chesapeake_landcover"
    published = json.loads((folder / "default_partition.json").read_text())
    by_split = splits_of("chesapeake", shared_data)
    ids = {split: [s["id"] for s in by_split[split]] for split in SPLITS}
    assert ids == chesapeake_partition(folder)
    # every id is in a split that the published partition lists it in, and in one split only
    for split, key in zip(SPLITS, ("train", "valid", "test"), strict=True):
        assert ids[split] and set(ids[split]) <= set(published[key])
    every = [i for split in SPLITS for i in ids[split]]
    assert sorted(every) == sorted({i for v in published.values() for i in v})
    assert len(every) == len(set(every))
    # this sample lists all 5 ids in all 3 splits: dealt 3 / 1 / 1 in id order
    assert ids == {
        "train": ["id_000051", "id_000138", "id_000181"],
        "val": ["id_000184"],
        "test": ["id_000367"],
    }


def test_chesapeake_a_disjoint_partition_is_kept_verbatim(tmp_path: Path) -> None:
    partition = {"train": ["b", "a"], "valid": ["c"], "test": ["d", "e"]}
    (tmp_path / "default_partition.json").write_text(json.dumps(partition))
    assert chesapeake_partition(tmp_path) == {
        "train": ["a", "b"],
        "val": ["c"],
        "test": ["d", "e"],
    }


def test_chesapeake_images_and_classes(shared_data: Path) -> None:
    by_split = splits_of("chesapeake", shared_data)
    for samples in by_split.values():
        check_contract(samples, "naip")
        for s in samples:
            assert s["image"].shape == (4, 256, 256) and "crs" not in s
            assert 0.0 <= s["image"].min() and 1.0 < s["image"].max() <= 255.0  # NAIP DN
            assert s["mask"].min() >= -1 and s["mask"].max() < len(CHESAPEAKE_CLASSES)
    train = torch.cat([s["mask"].flatten() for s in by_split["train"]])
    assert set(train.unique().tolist()) == set(range(6))  # every class in train
    # class 0 is water: near-zero NIR (band 4) where the mask says water
    water = by_split["train"][2]  # id_000181, 99.7 % water
    assert water["id"] == "id_000181" and (water["mask"] == 0).float().mean() > 0.99
    assert water["image"][3][water["mask"] == 0].mean() < 0.05 * 255  # DN
    assert dataset_info("chesapeake").class_names == CHESAPEAKE_CLASSES


def test_chesapeake_no_data_codes_are_unlabelled() -> None:
    codes = np.array([0, 1, 2, 3, 4, 5, 6, 15, 7])
    np.testing.assert_array_equal(chesapeake_mask(codes), [-1, 0, 1, 2, 3, 4, 5, -1, -1])


# ------------------------------------------------------------------------------------ NEON


def test_neon_harv_pairs_hsi_and_rgb_by_ground(shared_data: Path) -> None:
    folder = shared_data / "neon_harv_hsi_rgb"
    by_split = splits_of("neon_harv", shared_data)
    assert {k: len(v) for k, v in by_split.items()} == {"train": 1, "val": 1, "test": 1}
    check_disjoint(by_split, shape=(27, 10))
    assert [by_split[k][0]["window"][:2] for k in SPLITS] == [(0, 16), (16, 22), (22, 27)]
    for split in SPLITS:
        (s,) = by_split[split]
        check_contract([s], "neon_aop_369")
        assert s["image"].shape[0] == 369 and s["gsd"] == 1.0 and s["rgb_gsd"] == pytest.approx(0.1)
        assert s["rgb"].shape == (3, 10 * s["image"].shape[1], 10 * s["image"].shape[2])
        assert s["rgb_sensor"] == "rgb" and len(s["rgb_wavelengths"]) == 3
        assert s["rgb_transform"].c == s["transform"].c
        assert s["rgb_transform"].f == pytest.approx(s["transform"].f)
        check_georef([s], folder / NEON_HSI)
        rgb = {**s, "window": tuple(10 * v for v in s["window"]), "valid": s["rgb_valid"]}
        rgb["transform"] = s["rgb_transform"]
        check_georef([rgb], folder / NEON_RGB, key="rgb")
    with rasterio.open(folder / NEON_HSI.replace("_crs32618", "")) as plain:
        hsi = torch.cat([by_split[k][0]["image"] for k in SPLITS], dim=1)
        np.testing.assert_array_equal(hsi.numpy(), plain.read())


def test_neon_369_bands_skip_the_water_absorption() -> None:
    waves = get_sensor("neon_aop_369").wavelengths
    full = get_sensor("neon_aop").wavelengths
    assert len(waves) == 369 and np.all(np.diff(waves) > 0) and set(waves) <= set(full)
    assert not ((waves > 1345) & (waves < 1430)).any()
    assert not ((waves > 1800) & (waves < 1956)).any() and waves.max() < 2480


# ------------------------------------------------------------------------------- SpaceNet 6


@pytest.fixture(scope="module")
def spacenet6(shared_data: Path) -> Samples:
    return splits_of("spacenet6", shared_data)


def test_spacenet6_ms_pan_pairs_by_file(spacenet6: Samples, shared_data: Path) -> None:
    folder = shared_data / "spacenet6_ms_pan_sar"
    for split, index in zip(SPLITS, (1, 2, 3), strict=True):
        (pair,) = [s for s in spacenet6[split] if s["kind"] == "ms_pan"]
        assert pair["id"] == f"ms{index}"
        check_contract([pair], "worldview2_ms4")
        height, width = pair["image"].shape[1:]
        assert pair["pan"].shape == (1, 2 * height, 2 * width) == (1, 600, 600)
        assert pair["pan_sensor"] == "worldview2_pan" and len(pair["pan_wavelengths"]) == 1
        check_georef([pair], folder / f"ms{index}.tif")
        with rasterio.open(folder / f"pan{index}.tif") as src:
            assert pair["pan_transform"] == src.transform
            np.testing.assert_array_equal(pair["pan"].numpy(), src.read().astype(np.float32))
            assert pair["pan_valid"].sum() == (src.read(1) != 0).sum()
        assert pair["gsd"] == pytest.approx(1.0, abs=1e-3)
        assert pair["pan_gsd"] == pytest.approx(0.5, abs=1e-3)
    # ms2 / ms3 have a no-data (0) border: invalid, not data
    assert [s["valid"].sum().item() for s in (spacenet6["val"][0], spacenet6["test"][0])] == [
        90000 - 29020,
        90000 - 35114,
    ]


def test_spacenet6_sar_db_and_rgb_pair(spacenet6: Samples, shared_data: Path) -> None:
    folder = shared_data / "spacenet6_ms_pan_sar"
    sar = {split: [s for s in spacenet6[split] if s["kind"] == "sar"] for split in SPLITS}
    check_disjoint(sar, shape=(200, 200))
    for split in SPLITS:
        (s,) = sar[split]
        check_contract([s], "capella_x_sar")
        image = s["image"][:, s["valid"]]
        assert torch.isfinite(image).all() and s["valid"].float().mean() > 0.99
        co, cross = image[[0, 3]].median(), image[[1, 2]].median()
        assert -25 < cross < co < -5  # calibrated dB: co-pol above cross-pol
        assert s["pair_image"].shape == (3, *s["image"].shape[1:]) and s["pair_sensor"] == "rgb"
        assert s["pair_valid"].float().mean() > 0.99  # the SAR lies inside the RGB tile
        assert s["gsd"] == pytest.approx(2.5, abs=1e-3)
    test = sar["test"][0]
    r0, _, c0, _ = test["window"]
    with rasterio.open(folder / "sar_vv.tif") as src:
        z = src.read(1)
        scale = json.loads(src.tags()["TIFFTAG_IMAGEDESCRIPTION"])["collect"]["image"]
        assert test["transform"] == src.transform * rasterio.Affine.translation(c0, r0)
    expected = 10 * np.log10((scale["scale_factor"] * np.abs(z[r0 + 7, c0 + 11])) ** 2)
    assert test["image"][3, 7, 11].item() == pytest.approx(expected, abs=1e-4)


def test_sar_db_marks_zero_returns_invalid() -> None:
    db, valid = sar_db(np.array([[0 + 0j, 3 + 4j]], dtype=np.complex64))
    assert valid.tolist() == [[False, True]] and db[0, 0] == 0.0
    assert db[0, 1] == pytest.approx(10 * np.log10(25.0))


# ------------------------------------------------------------------------------------ RSICD


def test_rsicd_one_test_image_with_five_captions(shared_data: Path) -> None:
    by_split = splits_of("rsicd", shared_data)
    assert by_split["train"] == [] and by_split["val"] == []  # the documented exception
    (s,) = by_split["test"]
    check_contract([s], "rgb")
    assert s["image"].shape == (3, 224, 224) and 0 <= s["image"].min() and s["image"].max() <= 255
    assert len(s["caption"]) == 5 and all(isinstance(c, str) and c for c in s["caption"])
    assert s["caption"][0] == "Some green trees are around a stadium with a baseball field."
    assert np.isnan(s["gsd"]) and dataset_info("rsicd").task == "captions"


def test_every_loader_is_registered_with_its_sensors() -> None:
    loaders: dict[str, Callable] = {
        "naip": load_naip,
        "chesapeake": load_chesapeake,
        "neon_harv": load_neon_harv,
        "spacenet6": load_spacenet6,
        "rsicd": load_rsicd,
    }
    for name in loaders:
        info = dataset_info(name)
        assert all(get_sensor(sensor).name == sensor for sensor in info.sensors)
        assert info.split and info.source and info.licence

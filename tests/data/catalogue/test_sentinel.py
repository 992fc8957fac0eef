"""Sentinel catalogue loaders on the real samples of ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from rsfm.data.catalogue import (
    DatasetNotFoundError,
    chip_windows,
    dataset_info,
    load_dataset,
    region_split,
)
from rsfm.data.catalogue.sentinel import BIGEARTHNET_19, bigearthnet_product
from rsfm.sensors import get_sensor

pytestmark = pytest.mark.shared_data
SPLITS = ("train", "val", "test")


def _regions(dataset) -> set[tuple[int, int]]:
    return {tuple(map(int, s["id"].split(":")[1:])) for s in dataset.samples}


def test_region_split_covers_the_scene_once() -> None:
    cover = np.zeros((100, 90), dtype=int)
    for split in SPLITS:
        r = region_split(100, 90, split)
        cover[r.row0 : r.row1, r.col0 : r.col1] += 1
    assert (cover == 1).all()
    assert region_split(100, 90, "test").col0 == 45  # the east half is test
    chips = chip_windows(region_split(100, 90, "train"), 32)
    assert all(c.row1 <= 75 and c.col1 <= 45 for c in chips) and len(chips) == 6


def test_sen1floods11_chips_pairs_labels_and_georeferencing(shared_data) -> None:
    splits = {s: load_dataset("sen1floods11", s, shared_data) for s in SPLITS}
    assert [len(splits[s]) for s in SPLITS] == [24, 8, 32]
    ids = [set(splits[s].samples[i]["id"] for i in range(len(splits[s]))) for s in SPLITS]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    sample = splits["test"][0]
    assert sample["image"].shape == (13, 64, 64)
    assert torch.equal(
        sample["wavelengths"],
        torch.tensor(get_sensor("sentinel2_l1c").wavelengths, dtype=torch.float32),
    )
    assert sample["pair_image"].shape == (2, 64, 64) and sample["pair_sensor"] == "sentinel1_grd"
    assert set(sample["mask"].unique().tolist()) <= {-1, 0, 1}
    path = shared_data / "sen1floods11_spain" / "Spain_7370579_S2Hand.tif"
    with rasterio.open(path) as src:
        row, col = map(int, sample["id"].split(":")[1:])
        assert sample["crs"] == src.crs
        assert sample["transform"] == src.transform * src.transform.translation(col, row)
        window = src.read(window=((row, row + 64), (col, col + 64))).astype(np.float32)
    assert np.array_equal(sample["image"].numpy(), window)  # raw units, bit for bit
    water = torch.cat([s["mask"].flatten() for s in splits["test"].samples])
    assert 0.2 < float((water == 1).float().mean()) < 0.5  # the flood covers a third


def test_bigearthnet_v1_split_by_product_and_multi_hot(shared_data) -> None:
    splits = {s: load_dataset("bigearthnet_v1", s, shared_data) for s in SPLITS}
    products = [{bigearthnet_product(x["id"]) for x in splits[s].samples} for s in SPLITS]
    assert sum(len(splits[s]) for s in SPLITS) == 30
    assert all(products) and not (products[0] & products[2] or products[1] & products[2])
    sample = splits["train"][0]
    assert sample["image"].shape == (12, 120, 120) and sample["label"].shape == (19,)
    assert sample["label"].sum() >= 1 and "crs" not in sample  # no georeferencing: fine
    arrays = np.load(shared_data / "bigearthnet_v1_pairs" / f"{sample['id']}.npz")
    assert np.array_equal(sample["image"][1].numpy(), arrays["s2_B02"].astype(np.float32))
    assert dataset_info("bigearthnet_v1").class_names == BIGEARTHNET_19


def test_sentinel2_virginia_stacks_every_band_on_the_10m_grid(shared_data) -> None:
    train = load_dataset("sentinel2_virginia", "train", shared_data)
    sample = train[0]
    assert sample["image"].shape == (13, 128, 128)
    assert (sample["image"].flatten(1).std(dim=1) > 0).all()  # every band carries signal
    with rasterio.open(shared_data / "sentinel2_virginia_jp2" / "s2_B02.jp2") as src:
        assert sample["transform"] == src.transform  # the first chip starts at the corner
        assert np.array_equal(
            sample["image"][1].numpy(), src.read(1, window=((0, 128), (0, 128))).astype(np.float32)
        )


def test_band_stats_normalise_a_split(shared_data) -> None:
    train = load_dataset("sen1floods11", "train", shared_data)
    stats = train.compute_band_stats()
    assert set(stats) == {"sentinel2_l1c"}
    train.band_stats = stats
    values = torch.stack([train[i]["image"] for i in range(len(train))])
    assert values.mean().abs() < 0.2 and 0.7 < values.std() < 1.2
    pair = train.compute_band_stats(image_key="pair_image")["sentinel1_grd"]
    assert pair.band_names == ["VV", "VH"] and pair.mean[0] < 0  # dB backscatter


def test_missing_folder_says_how_to_fix(tmp_path) -> None:
    with pytest.raises(DatasetNotFoundError, match="RSFM_DATA_ROOT"):
        load_dataset("sen1floods11", "train", tmp_path)
    with pytest.raises(KeyError, match="registered datasets"):
        load_dataset("no_such_set", "train", tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        region_split(10, 10, "training")


def test_virginia_prepare_writes_a_cog_the_sensor_tags_describe(shared_data, tmp_path) -> None:
    import importlib.util

    from rsfm.sensors import sensor_from_raster

    script = Path(__file__).resolve().parents[3] / "datasets" / "sentinel2_virginia" / "prepare.py"
    spec = importlib.util.spec_from_file_location("s2v_prepare", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.write_stacked(shared_data / "sentinel2_virginia_jp2", tmp_path / "s2.tif")
    sensor = sensor_from_raster(out)
    assert sensor.band_names == get_sensor("sentinel2_l1c").band_names
    assert np.allclose(sensor.wavelengths, get_sensor("sentinel2_l1c").wavelengths)
    chip = load_dataset("sentinel2_virginia", "train", shared_data)[0]
    with rasterio.open(out) as src:
        assert src.transform == chip["transform"] and src.crs == chip["crs"]
        window = src.read(window=((0, 128), (0, 128))).astype(np.float32)
    assert np.abs(window - chip["image"].numpy()).max() <= 0.5  # rounded to uint16

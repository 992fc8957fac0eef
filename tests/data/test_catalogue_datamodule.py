"""CatalogueDataModule: random crops of catalogue datasets, one source per batch, honest splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import rsfm.data.datamodules.catalogue as catalogue_module
from rsfm.data.catalogue import DatasetInfo, chip_sample, register_dataset
from rsfm.data.datamodules.catalogue import CatalogueDataModule
from rsfm.sensors import get_sensor

OPTICAL = DatasetInfo(
    name="toy_optical_pairs", title="toy S2 chips with S1 pairs", folder="toy_optical",
    task="segmentation", sensors=("sentinel2_l1c", "sentinel1_grd"), class_names=("a", "b"),
)  # fmt: skip
HYPER = DatasetInfo(
    name="toy_naip", title="toy NAIP chips", folder="toy_naip", task="segmentation",
    sensors=("naip",), class_names=("a", "b"),
)  # fmt: skip
SPLIT_OFFSET = {"train": 0.0, "val": 5000.0, "test": 1e6}  # test pixels are unmistakable


@register_dataset(OPTICAL)
def _optical(folder: Path, split: str) -> list[dict]:
    rng = np.random.default_rng(len(split))
    s1 = get_sensor("sentinel1_grd")
    out = []
    for i in range(3):
        image = rng.normal(1000 + SPLIT_OFFSET[split], 100, (13, 40, 40))
        pair = rng.normal(-15, 3, (2, 40, 40)).astype(np.float32)
        out.append(
            chip_sample(
                image, "sentinel2_l1c", sample_id=f"o{i}", mask=np.zeros((40, 40)),
                pair_image=torch.from_numpy(pair), pair_sensor=s1.name,
                pair_wavelengths=torch.from_numpy(s1.wavelengths.astype(np.float32)),
                pair_valid=torch.ones(40, 40, dtype=torch.bool),
            )
        )  # fmt: skip
    return out


@register_dataset(HYPER)
def _naip(folder: Path, split: str) -> list[dict]:
    rng = np.random.default_rng(7 + len(split))
    return [
        chip_sample(
            rng.normal(120 + SPLIT_OFFSET[split], 20, (4, 48, 48)),
            "naip",
            sample_id=f"n{i}",
            mask=np.ones((48, 48)),
        )
        for i in range(4)
    ] + [chip_sample(np.ones((4, 8, 8)), "naip", sample_id="small", mask=np.ones((8, 8)))]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for info in (OPTICAL, HYPER):
        (tmp_path / info.folder).mkdir()
    return tmp_path


def test_crops_one_source_per_batch_normalised_and_no_test_split(root, monkeypatch) -> None:
    asked = []
    real_load = catalogue_module.load_dataset

    def spy(name, split, data_root=None):
        asked.append(split)
        return real_load(name, split, data_root)

    monkeypatch.setattr(catalogue_module, "load_dataset", spy)
    dm = CatalogueDataModule(
        ["toy_optical_pairs", "toy_naip"], crop_size=32, samples_per_epoch=64, data_root=root,
        batch_size=8,
    )  # fmt: skip
    dm.setup("fit")
    assert "test" not in asked and set(asked) == {"train", "val"}
    assert set(dm.band_stats) == {"sentinel2_l1c", "sentinel1_grd", "naip"}
    assert dm.band_stats["sentinel2_l1c"].mean[0] == pytest.approx(1000, abs=20)  # train pixels
    sensors = set()
    for batch in dm.train_dataloader():
        for part in batch[0].values() if isinstance(batch, tuple) else [batch]:
            assert part["image"].shape[-2:] == (32, 32)
            assert len(set(part["sensor"])) == 1  # one source per batch: no band padding
            sensors.add(part["sensor"][0])
            assert part["image"].mean().abs() < 0.5  # normalised with the train statistics
            if "pair_image" in part:
                assert part["pair_image"].shape[1] == 2 and part["pair_image"].mean().abs() < 0.5
    assert sensors == {"sentinel2_l1c", "naip"}
    facts = dm.data_facts()
    assert facts.input_size == 32 and facts.class_names is None  # pretraining: labels dropped
    assert {d["name"] for d in facts.datasets} == {
        "rsfm-catalogue:toy_optical_pairs", "rsfm-catalogue:toy_naip",
    }  # fmt: skip


def test_validation_crops_are_fixed_and_small_chips_left_out(root) -> None:
    dm = CatalogueDataModule(["toy_naip"], crop_size=32, data_root=root, batch_size=2)
    dm.setup("fit")
    first = [b["image"] for b in dm.val_dataloader()]
    second = [b["image"] for b in dm.val_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert sum(len(b) for b in first) == 4  # the 8 px chip does not fit a 32 px crop


def test_segmentation_keeps_masks_and_needs_matching_classes(root) -> None:
    dm = CatalogueDataModule(
        ["toy_naip"], crop_size=32, task="segmentation", data_root=root, batch_size=4
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["mask"].shape == (4, 32, 32) and (batch["mask"] == 1).all()
    assert dm.data_facts().class_names == ["a", "b"]
    with pytest.raises(ValueError, match="task"):
        CatalogueDataModule(["toy_naip"], task="detection")

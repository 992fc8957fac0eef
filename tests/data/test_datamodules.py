"""The datamodule base: shared loaders and the one band-statistics contract with the tasks."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from rsfm.band_stats import BandStats
from rsfm.data.datamodules.base import BaseDataModule, DataFacts, dataset_record
from rsfm.data.datamodules.captions import CaptionDataModule
from rsfm.data.datamodules.hyperspectral import HyperspectralDataModule
from rsfm.data.datamodules.labelled import LabelledGeoDataModule
from rsfm.data.datamodules.multimodal import MultiModalDataModule
from rsfm.data.datamodules.pretrain import GeoDataModule
from rsfm.data.datamodules.sqa import SQADataModule
from rsfm.data.datamodules.triplets import TripletDataModule
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.sensors import get_sensor

TINY_WORLD = SyntheticWorldConfig(seed=0, n_scenes=3, scene_size_m=960)


class _Numbers(BaseDataModule):
    collate_fn = None  # plain tensors

    def setup(self, stage: str | None = None) -> None:
        self.train_dataset = list(torch.arange(10.0))
        self.val_dataset = list(torch.arange(3.0))


def test_every_datamodule_shares_the_base() -> None:
    for cls in (
        GeoDataModule,
        LabelledGeoDataModule,
        HyperspectralDataModule,
        MultiModalDataModule,
        CaptionDataModule,
        TripletDataModule,
        SQADataModule,
    ):
        assert issubclass(cls, BaseDataModule), cls
        assert "_loader" not in vars(cls) or cls is TripletDataModule, cls  # one loader


def test_base_loaders_batch_shuffle_and_fall_back_to_validation() -> None:
    data = _Numbers(batch_size=4)
    with pytest.raises(RuntimeError, match="setup"):
        data.train_dataloader()
    data.setup()
    train = list(data.train_dataloader())
    assert [len(b) for b in train] == [4, 4]  # the incomplete last batch is dropped
    assert [b.tolist() for b in data.test_dataloader()] == [[0.0, 1.0, 2.0]]
    assert [b.tolist() for b in data.predict_dataloader()] == [[0.0, 1.0, 2.0]]
    assert data.band_stats == {} and data.use_band_stats({"x": {}}) == {}


def test_dataset_record_names_files_relative_to_the_root_and_hashes_them(tmp_path: Path) -> None:
    (tmp_path / "scene").mkdir()
    path = tmp_path / "scene" / "a.tif"
    path.write_bytes(b"pixels")
    record = dataset_record("world", [path, path], tmp_path)
    assert record == {
        "name": "world",
        "files": ["scene/a.tif"],
        "sha256": {"scene/a.tif": hashlib.sha256(b"pixels").hexdigest()},
    }


def test_labelled_facts_name_the_sensor_bands_classes_and_files() -> None:
    data = LabelledGeoDataModule(
        synthetic=TINY_WORLD, patch_size=32, samples_per_epoch=16, val_samples=8, stats_samples=8
    )
    data.prepare_data()
    data.setup("fit")
    facts = data.data_facts()
    assert isinstance(facts, DataFacts)
    assert facts.sensors == {"sentinel2_l1c": get_sensor("sentinel2_l1c").band_names}
    assert facts.class_names == data.class_names and facts.input_size == 32
    (record,) = facts.datasets
    assert record["name"] == "rsfm-synthetic-world:segmentation"
    assert any(name.endswith(".tif") for name in record["files"])
    first = record["files"][0]
    digest = hashlib.sha256((data.data_root / first).read_bytes()).hexdigest()
    assert record["sha256"][first] == digest
    assert set(data.band_stats) == {"sentinel2_l1c"}
    assert all(isinstance(s, BandStats) for s in data.band_stats.values())


def test_pretrain_statistics_imposed_after_setup_reach_the_datasets() -> None:
    data = GeoDataModule(
        synthetic=TINY_WORLD,
        synthetic_sensors=["sentinel2_l1c", "naip"],
        synthetic_pairs=[],
        patch_size=32,
        samples_per_epoch=8,
        val_samples=4,
        stats_samples=8,
    )
    data.prepare_data()
    data.setup("fit")
    assert set(data.data_facts().sensors) == {"sentinel2_l1c", "naip"}
    own = data.band_stats["naip"]
    shifted = BandStats.from_dict({**own.to_dict(), "mean": [m + 1.0 for m in own.mean]})
    assert data.use_band_stats({"naip": shifted.to_dict(), "other": own}) == {"naip": "naip"}
    assert data.band_stats["naip"] == shifted
    naip = [d for key, d in data._fed if key == "naip"]
    assert naip and all(d.normalization == shifted for d in naip)
    assert all(d.normalization != shifted for key, d in data._fed if key != "naip")

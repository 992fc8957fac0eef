"""Train from the datasets catalogue (real sensor data): random crops of catalogue chips.

:class:`CatalogueDataModule` draws fixed-size crops from the *train* split of one or more
registered datasets (``rsfm.data.catalogue``) for training, and fixed centre crops of their
*val* split for validation; the *test* split is never touched (it belongs to ``rsfm evaluate``
and the model cards). Every sensor is normalised with statistics of its own training pixels,
pooled over the datasets that carry it. Samples with a co-registered pair (``pair_image``:
Sen1Floods11 and BigEarthNet S2/S1) go through a second loader, so a MAE run mixes tokens
across sensors on real pairs; the two loaders are combined as the GeoTIFF datamodule does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rsfm.band_stats import BandStats
from rsfm.data.catalogue import ChipDataset, load_dataset
from rsfm.data.catalogue.base import normalise_sample
from rsfm.data.datamodules.base import BaseDataModule, DataFacts, dataset_record
from rsfm.sensors import get_sensor

log = logging.getLogger(__name__)

PAIR_KEYS = ("pair_image", "pair_valid")
CROP_KEYS = ("image", "valid", "mask", *PAIR_KEYS)
#: Keys a crop keeps besides the cropped ones (georeferencing and ids are dropped: every batch
#: of mixed sources then has the same keys).
KEPT_KEYS = ("wavelengths", "gsd", "sensor", "pair_wavelengths", "pair_sensor")
LABEL_TASKS = ("segmentation",)


def _crop(sample: dict[str, Any], row: int, col: int, size: int, flip: int = 0) -> dict:
    out = {k: sample[k] for k in KEPT_KEYS if k in sample}
    for key in CROP_KEYS:
        if key in sample:
            value = sample[key][..., row : row + size, col : col + size]
            if flip & 1:
                value = value.flip(-1)
            if flip & 2:
                value = value.flip(-2)
            out[key] = value.contiguous()
    return out


def _normalise(sample: dict[str, Any], stats: dict[str, BandStats]) -> dict[str, Any]:
    return normalise_sample(sample, stats, prefixes=("", "pair_"))


class RandomCrops(Dataset):
    """``length`` random crops (with random flips), one source per batch.

    Read in order (the loader does not shuffle: the crops are random already), the crops of
    one batch of ``batch_size`` come from one source dataset, so a batch never pads a 4-band
    sensor up to a 224-band one. Sources are drawn with equal probability (small real sources
    count as much as big ones). Draws come from generators seeded by (seed, index, the
    process's torch seed, a call counter), as :class:`~rsfm.data.windows.RandomWindows` does:
    reproducible under ``seed_everything``, new every epoch, different on every DDP rank.
    """

    def __init__(
        self,
        sources: Sequence[list[dict[str, Any]]],
        size: int,
        length: int,
        stats: dict[str, BandStats],
        seed: int = 0,
        batch_size: int = 1,
    ) -> None:
        self.sources = [s for s in sources if s]
        self.size = size
        self.length = length
        self.stats = stats
        self.seed = seed
        self.batch_size = max(1, batch_size)
        self._calls = 0
        self._source: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        self._calls += 1
        rng = np.random.default_rng([self.seed, index, torch.initial_seed() % (2**63), self._calls])
        if self._source is None or index % self.batch_size == 0:
            self._source = self.sources[int(rng.integers(len(self.sources)))]
        sample = self._source[int(rng.integers(len(self._source)))]
        height, width = sample["image"].shape[-2:]
        row = int(rng.integers(height - self.size + 1))
        col = int(rng.integers(width - self.size + 1))
        return _normalise(_crop(sample, row, col, self.size, int(rng.integers(4))), self.stats)


class CentreCrops(Dataset):
    """One centre crop per chip, no flip (validation)."""

    def __init__(self, samples: list[dict[str, Any]], size: int, stats: dict[str, BandStats]):
        self.samples = samples
        self.size = size
        self.stats = stats

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        height, width = sample["image"].shape[-2:]
        row, col = (height - self.size) // 2, (width - self.size) // 2
        return _normalise(_crop(sample, row, col, self.size), self.stats)


def band_view(sample: dict[str, Any], sensor: str) -> dict[str, Any]:
    """The sample seen as ``sensor``: only the bands that sensor has (matched by band name).

    Used to train one model for two products of one instrument (Sentinel-2 L1C and L2A: L2A
    lacks B10) from the product that has labels.

    Raises:
        ValueError: If the sample's sensor lacks a band of ``sensor``.
    """
    source, target = get_sensor(sample["sensor"]), get_sensor(sensor)
    missing = [b for b in target.band_names if b not in source.band_names]
    if missing:
        raise ValueError(f"{sample['sensor']} has no band {missing} of {sensor}: no view")
    rows = [source.band_names.index(b) for b in target.band_names]
    view = dict(sample)
    view.update(
        image=sample["image"][rows],
        wavelengths=sample["wavelengths"][rows],
        sensor=target.name,
        id=f"{sample.get('id', '')}@{target.name}",
    )
    return view


def pooled_band_stats(datasets: Sequence[ChipDataset]) -> dict[str, BandStats]:
    """Per-sensor statistics over the pixels of every dataset that carries the sensor."""
    by_sensor: dict[str, list[dict[str, Any]]] = {}
    by_pair: dict[str, list[dict[str, Any]]] = {}
    for dataset in datasets:
        for sample in dataset.samples:
            by_sensor.setdefault(sample["sensor"], []).append(sample)
            if "pair_image" in sample:
                by_pair.setdefault(sample["pair_sensor"], []).append(sample)
    stats: dict[str, BandStats] = {}
    info = datasets[0].info
    for samples in by_sensor.values():
        stats.update(ChipDataset(info, "train", samples).compute_band_stats())
    for sensor, samples in by_pair.items():
        if sensor not in stats:
            pooled = ChipDataset(info, "train", samples)
            stats.update(pooled.compute_band_stats(image_key="pair_image"))
    return stats


class CatalogueDataModule(BaseDataModule):
    """Random crops of real catalogue datasets for pretraining and fine-tuning.

    Args:
        datasets: Registered dataset names (``rsfm evaluate --list``).
        crop_size: Crop side in pixels (chips smaller than this are left out, with a notice).
        samples_per_epoch: Training crops per epoch (per loader).
        pairs: Feed samples with a co-registered pair through a paired loader (token mixup);
            False: only their first image, with the unpaired samples.
        task: ``pretraining`` (labels dropped) or ``segmentation`` (every dataset must hold
            ``mask`` labels with the same class names, which the module then reports).
        band_views: ``{sensor: other sensor}``: every sample of ``sensor`` is also fed as the
            other sensor (its bands only, own statistics), e.g. ``{sentinel2_l1c:
            sentinel2_l2a}`` trains one model for 13-band L1C and 12-band L2A input.
        data_root: Folder holding the dataset folders (default: ``$RSFM_DATA_ROOT``, then
            ``../shared/data``).
        seed: Seed of the crops.
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        datasets: Sequence[str],
        crop_size: int = 32,
        samples_per_epoch: int = 1024,
        pairs: bool = True,
        task: str = "pretraining",
        band_views: dict[str, str] | None = None,
        data_root: str | os.PathLike[str] | None = None,
        seed: int = 0,
        batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        if not datasets:
            raise ValueError("CatalogueDataModule needs at least one dataset name")
        self.dataset_names = list(datasets)
        self.patch_size = crop_size
        self.samples_per_epoch = samples_per_epoch
        self.pairs = pairs
        if task not in ("pretraining", *LABEL_TASKS):
            raise ValueError(f"task {task!r}: expected pretraining or one of {LABEL_TASKS}")
        self.task = task
        self.band_views = dict(band_views or {})
        self.data_root = data_root
        self.seed = seed
        self.class_names: list[str] | None = None
        self._splits: dict[str, dict[str, ChipDataset]] = {}
        self._train: dict[str, RandomCrops] = {}
        self._val: dict[str, CentreCrops] = {}

    def _fits(self, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fits = [s for s in samples if min(s["image"].shape[-2:]) >= self.patch_size]
        fits += [
            band_view(s, self.band_views[s["sensor"]])
            for s in fits
            if s["sensor"] in self.band_views
        ]
        drop = {"mask"} if self.task == "pretraining" else set()
        if not self.pairs:  # pairs unused: their sensors are neither fed nor described
            drop |= {k for s in fits for k in s if k.startswith("pair_")}
        return [{k: v for k, v in s.items() if k not in drop} for s in fits] if drop else fits

    def _groups(self, split: str) -> tuple[list[list[dict]], list[list[dict]]]:
        single, paired = [], []
        for name in self.dataset_names:
            samples = self._fits(self._splits[name][split].samples)
            if len(samples) < len(self._splits[name][split].samples):
                log.info("%s %s: chips smaller than %d px left out", name, split, self.patch_size)
            if self.pairs:
                paired.append([s for s in samples if "pair_image" in s])
                single.append([s for s in samples if "pair_image" not in s])
            else:
                single.append(samples)
        return [g for g in single if g], [g for g in paired if g]

    def setup(self, stage: str | None = None) -> None:
        """Load the train and val splits, compute per-sensor statistics, build the crops."""
        if self._train:
            return
        for name in self.dataset_names:
            self._splits[name] = {
                split: load_dataset(name, split, self.data_root) for split in ("train", "val")
            }
        if self.task in LABEL_TASKS:
            self.class_names = self._label_classes()
        if not self.band_stats:  # statistics of the samples fed (and their views) only
            train = [s["train"] for s in self._splits.values()]
            fed = [self._fits(d.samples) for d in train]
            self.band_stats = pooled_band_stats(
                [ChipDataset(d.info, "train", f) for d, f in zip(train, fed, strict=True) if f]
            )
        single, paired = self._groups("train")
        if not single and not paired:
            raise ValueError(
                f"no training chip of {self.dataset_names} is at least {self.patch_size} px"
            )
        for key, groups in (("single", single), ("paired", paired)):
            if groups:
                self._train[key] = RandomCrops(
                    groups,
                    self.patch_size,
                    self.samples_per_epoch,
                    self.band_stats,
                    self.seed,
                    self.batch_size,
                )
        val_single, val_paired = self._groups("val")
        for key, groups in (("single", val_single), ("paired", val_paired)):
            flat = [s for g in groups for s in g]
            if flat:
                self._val[key] = CentreCrops(flat, self.patch_size, self.band_stats)
        self.train_dataset = next(iter(self._train.values()))
        self.val_dataset = next(iter(self._val.values()), None)

    def _label_classes(self) -> list[str]:
        infos = [splits["train"].info for splits in self._splits.values()]
        names = {info.class_names for info in infos}
        if len(names) != 1 or any(info.task != self.task for info in infos):
            raise ValueError(
                f"{self.dataset_names}: a {self.task} datamodule needs datasets of that task with "
                f"the same classes; got {[(i.name, i.task, i.class_names) for i in infos]}"
            )
        return list(names.pop())

    def use_band_stats(self, stats: Any) -> dict[str, str]:
        """Impose statistics (from a checkpoint) on the crops already built."""
        used = super().use_band_stats(stats)
        for dataset in (*self._train.values(), *self._val.values()):
            dataset.stats = self.band_stats
        return used

    def _combined(self, datasets: dict[str, Dataset], shuffle: bool) -> Any:
        # Training crops are random already and come one source per batch: read them in order.
        loaders = {
            k: self._loader(d, shuffle=False, drop_last=shuffle and len(d) > self.batch_size)
            for k, d in datasets.items()
        }
        return self._combine(loaders, shuffle)

    def train_dataloader(self) -> Any:
        """Random crops of the train splits (single-sensor and paired loaders combined)."""
        return self._combined(self._train, shuffle=True)

    def val_dataloader(self) -> Any:
        """Centre crops of the val splits."""
        if not self._val:
            raise ValueError(f"no validation chip of {self.dataset_names} fits {self.patch_size}")
        return self._combined(self._val, shuffle=False)

    def data_facts(self) -> DataFacts:
        """Sensors and band names fed, crop size, and the files of every dataset used."""
        records = [
            dataset_record(f"rsfm-catalogue:{name}", splits["train"].files, splits["train"].root)
            for name, splits in self._splits.items()
        ]
        return DataFacts(
            sensors={key: list(stats.band_names) for key, stats in self.band_stats.items()},
            class_names=self.class_names,
            input_size=self.patch_size,
            datasets=records,
        )

"""Segmentation-quality datasets (RS-SQED-style) built from any labelled segmentation data.

:func:`build_sqa_dataset` (in :mod:`rsfm.data.sqa_builder`) runs one or more segmenters over
grid windows of labelled GeoTIFFs, scores every prediction against the labels (per-image overall
accuracy and mIoU, torchmetrics) and stores, per (window, segmenter) record, the image reference
(file + window bounds), the segmenter id, its pooled intermediate features and the accuracy
targets::

    <root>/info.json              classes, sensor/bands, band statistics, segmenters + recipes
    <root>/manifest.jsonl         one JSON record per (window, segmenter)
    <root>/manifest.parquet       the same table (written when pyarrow is installed)
    <root>/features.safetensors   "<segmenter>/encoder" [n, D], "<segmenter>/prediction" [n, P]

:class:`SQADataset` reads it back (the image window re-read from its file, normalised with the
stored statistics); :class:`SQADataModule` splits it by image (held-out windows never appear in
training) and can build it first, from hub segmenters and/or a zoo of synthetic segmenters of
different quality (:func:`synthetic_segmenters`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset

from rsfm.data.normalization import BandStats
from rsfm.data.raster import SensorRasterDataset
from rsfm.data.sqa_builder import (
    FEATURE_KEYS,
    FEATURES_NAME,
    INFO_NAME,
    MANIFEST_NAME,
    TARGETS,
    LabelledImages,
    build_sqa_dataset,
)
from rsfm.data.sqa_builder import FORMAT_VERSION as FORMAT_VERSION
from rsfm.data.sqa_builder import PARQUET_NAME as PARQUET_NAME
from rsfm.data.sqa_builder import per_image_accuracy as per_image_accuracy
from rsfm.data.synthetic import SyntheticWorldConfig


# ----------------------------------------------------------------------------- reading
def read_manifest(root: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(info, records)`` of a dataset folder.

    Raises:
        FileNotFoundError: Naming the folder when it holds no SQA dataset.
    """
    root = Path(root)
    if not (root / INFO_NAME).is_file() or not (root / MANIFEST_NAME).is_file():
        raise FileNotFoundError(f"{root}: not an SQA dataset (no {INFO_NAME} / {MANIFEST_NAME})")
    info = json.loads((root / INFO_NAME).read_text(encoding="utf-8"))
    with open(root / MANIFEST_NAME, encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return info, records


class SQADataset(Dataset):
    """Records of an SQA dataset folder: image window, segmenter features and accuracy.

    Each item: ``image`` float32 [C, H, W] (normalised with the stored statistics; invalid
    pixels 0), ``wavelengths`` [C], ``valid`` [H, W], ``segmenter_features`` float32 [F]
    (the chosen feature keys concatenated, zero-padded to the widest segmenter), ``target``
    (the chosen accuracy), ``oa``, ``miou``, ``image_id``, ``segmenter`` and ``segmenter_index``.

    Args:
        root: Dataset folder written by :func:`build_sqa_dataset`.
        target: ``miou`` or ``oa``.
        feature_keys: Segmenter features to use (``encoder``, ``prediction``).
        image_ids: Keep only records of these images (a split).
        load_images: Read image windows (False: features and targets only).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        target: str = "miou",
        feature_keys: Sequence[str] = ("prediction",),
        image_ids: Sequence[int] | None = None,
        load_images: bool = True,
    ) -> None:
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        unknown = [k for k in feature_keys if k not in FEATURE_KEYS]
        if unknown or not feature_keys:
            raise ValueError(f"feature_keys must be a non-empty subset of {FEATURE_KEYS}")
        self.root = Path(root)
        self.info, records = read_manifest(self.root)
        keep = None if image_ids is None else set(int(i) for i in image_ids)
        self.records = [r for r in records if keep is None or r["image_id"] in keep]
        self.target = target
        self.feature_keys = list(feature_keys)
        self.load_images = load_images
        self.segmenters = list(self.info["segmenters"])
        tensors = load_file(str(self.root / FEATURES_NAME))
        self.features = {
            name: torch.cat([tensors[f"{name}/{k}"] for k in self.feature_keys], dim=1)
            for name in self.segmenters
        }
        self.feature_dim = max(int(v.shape[1]) for v in self.features.values())
        self.band_stats = BandStats.from_dict(self.info["band_stats"])
        self._readers: dict[str, SensorRasterDataset] = {}
        self._images: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.records)

    @property
    def image_ids(self) -> list[int]:
        """Distinct image ids, in record order."""
        return list(dict.fromkeys(r["image_id"] for r in self.records))

    def _image(self, record: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The record's window (cached per image: every segmenter shares it)."""
        cached = self._images.get(record["image_id"])
        if cached is not None:
            return cached
        reader = self._readers.get(record["file"])
        if reader is None:
            reader = SensorRasterDataset(
                [record["file"]],
                sensor=self.info["sensor"],
                bands=self.info["bands"],
                normalization=self.band_stats,
                nonfinite="mask",
            )
            self._readers[record["file"]] = reader
        x0, y0, x1, y1 = record["bounds"]
        sample = reader[(slice(x0, x1), slice(y0, y1))]
        image = {k: sample[k] for k in ("image", "wavelengths", "valid")}
        self._images[record["image_id"]] = image
        return image

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        feats = self.features[record["segmenter"]][record["feature_row"]]
        if feats.shape[0] < self.feature_dim:  # heterogeneous segmenters: zero-pad
            feats = torch.cat([feats, feats.new_zeros(self.feature_dim - feats.shape[0])])
        item: dict[str, Any] = {
            "segmenter_features": feats.float(),
            "target": torch.tensor(record[self.target], dtype=torch.float32),
            "oa": torch.tensor(record["oa"], dtype=torch.float32),
            "miou": torch.tensor(record["miou"], dtype=torch.float32),
            "image_id": torch.tensor(record["image_id"], dtype=torch.int64),
            "segmenter_index": torch.tensor(self.segmenters.index(record["segmenter"])),
            "segmenter": record["segmenter"],
        }
        if self.load_images:
            item.update(self._image(record))
        return item


def split_image_ids(
    records: list[dict[str, Any]], val_fraction: float, seed: int = 0
) -> tuple[list[int], list[int]]:
    """(train, held-out) image ids: whole files are held out when there are several, else a
    seeded random share of the windows (overlapping windows of one file may then share pixels).
    """
    files = list(dict.fromkeys(r["file"] for r in records))
    by_file: dict[str, list[int]] = {}
    for r in records:
        by_file.setdefault(r["file"], [])
        if r["image_id"] not in by_file[r["file"]]:
            by_file[r["file"]].append(r["image_id"])
    rng = np.random.default_rng(seed)
    if len(files) > 1:
        n_val = min(len(files) - 1, max(1, round(val_fraction * len(files))))
        held = set(rng.permutation(len(files))[:n_val].tolist())
        val = [i for k, f in enumerate(files) if k in held for i in by_file[f]]
    else:
        ids = by_file[files[0]]
        n_val = min(len(ids) - 1, max(1, round(val_fraction * len(ids))))
        val = sorted(rng.permutation(ids)[:n_val].tolist())
    val_set = set(val)
    train = [i for f in files for i in by_file[f] if i not in val_set]
    return train, sorted(val)


# ----------------------------------------------------------------------------- datamodule
class SQADataModule(pl.LightningDataModule):
    """Train / held-out splits of an SQA dataset folder, built first when missing.

    When ``root`` holds no dataset, :meth:`prepare_data` builds one with
    :func:`build_sqa_dataset` from ``segmenters`` (hub names or entry folders) plus, with
    ``zoo``, the synthetic segmenters of :func:`synthetic_segmenters` (``zoo`` holds its
    keyword arguments; the world is ``synthetic``), over ``images``/``labels`` or the world.

    Args:
        root: Dataset folder.
        target: Regressed accuracy, ``oa`` or ``miou``.
        feature_keys: Segmenter features fed to the model (``prediction``: output statistics,
            comparable across architectures; ``encoder``: pooled encoder features).
        val_fraction: Share of files (or of windows, for a single file) held out.
        batch_size: Records per batch.
        num_workers: DataLoader workers.
        seed: Seed of the split.
        segmenters: Hub names / entry folders to assess (building only).
        hub: Hub of the named segmenters.
        zoo: ``synthetic_segmenters`` keyword arguments (building only).
        images: Labelled images (building only; default: the synthetic world).
        labels: Label rasters of ``images``.
        sensor: Registered sensor of the images.
        bands: Band subset.
        class_names: Class names of the labels.
        num_classes: Number of classes (default: ``len(class_names)``).
        ignore_values: Raw label values meaning "unlabelled".
        label_offset: Subtracted from raw labels.
        synthetic: Synthetic world settings.
        patch_size: Window side in pixels.
        stride: Window step in pixels (default: ``patch_size``).
        max_windows_per_file: Cap on windows per file.
    """

    def __init__(
        self,
        root: str,
        target: str = "oa",
        feature_keys: list[str] | None = None,
        val_fraction: float = 0.25,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        segmenters: list[str] | None = None,
        hub: str | None = None,
        zoo: dict[str, Any] | None = None,
        images: list[str] | None = None,
        labels: list[str] | None = None,
        sensor: str | None = None,
        bands: list[str] | None = None,
        class_names: list[str] | None = None,
        num_classes: int | None = None,
        ignore_values: list[int] | None = None,
        label_offset: int = 0,
        synthetic: SyntheticWorldConfig | None = None,
        patch_size: int = 32,
        stride: int | None = None,
        max_windows_per_file: int | None = None,
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.target = target
        self.feature_keys = list(feature_keys or ["prediction"])
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.segmenters = list(segmenters or [])
        self.hub = hub
        self.zoo = zoo
        self.source = LabelledImages(
            images=list(images or []),
            labels=list(labels or []),
            sensor=sensor,
            bands=bands,
            num_classes=num_classes,
            class_names=class_names,
            ignore_values=list(ignore_values or []),
            label_offset=label_offset,
            synthetic=synthetic,
        )
        self.patch_size = patch_size
        self.stride = stride
        self.max_windows_per_file = max_windows_per_file
        self.train_dataset: SQADataset | None = None
        self.val_dataset: SQADataset | None = None

    def prepare_data(self) -> None:
        """Build the dataset folder unless it exists."""
        if (self.root / INFO_NAME).exists():
            return
        specs: list[Any] = list(self.segmenters)
        stats = None
        if self.zoo is not None:
            from rsfm.tasks.sqa import synthetic_segmenters  # trains models: imported on use

            zoo = synthetic_segmenters(self.source.synthetic, **self.zoo)
            specs.extend(zoo)
            stats = zoo[0].normalization if not self.source.images else None
        if not specs:
            raise ValueError(f"{self.root} holds no SQA dataset; give segmenters or zoo to build")
        build_sqa_dataset(
            specs,
            self.root,
            self.source,
            patch_size=self.patch_size,
            stride=self.stride,
            max_windows_per_file=self.max_windows_per_file,
            normalization=stats,
            hub=self.hub,
        )

    def setup(self, stage: str | None = None) -> None:
        """Split by image: held-out windows never appear in training."""
        _, records = read_manifest(self.root)
        train_ids, val_ids = split_image_ids(records, self.val_fraction, self.seed)
        self.train_dataset = SQADataset(self.root, self.target, self.feature_keys, train_ids)
        self.val_dataset = SQADataset(self.root, self.target, self.feature_keys, val_ids)

    @property
    def feature_dim(self) -> int:
        """Segmenter feature size F (after :meth:`setup`)."""
        if self.train_dataset is None:
            self.setup("fit")
        return self.train_dataset.feature_dim

    @property
    def band_stats(self) -> BandStats | None:
        """The image statistics of the dataset (after :meth:`setup`)."""
        return None if self.train_dataset is None else self.train_dataset.band_stats

    def _loader(self, dataset: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            drop_last=shuffle and len(dataset) > self.batch_size,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training records."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """Held-out records (every segmenter on every held-out image)."""
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Same as validation."""
        return self._loader(self.val_dataset, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Same as validation."""
        return self._loader(self.val_dataset, shuffle=False)

"""SQA dataset folders: the on-disk format, the labelled-image source and a reader."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch.utils.data import Dataset

from rsfm.band_stats import BandStats
from rsfm.data.datamodules.pretrain import expand_paths
from rsfm.data.raster import SensorRasterDataset
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.spectra import CLASS_NAMES
from rsfm.data.synthetic.world import ensure_synthetic_world, scene_files

FORMAT_VERSION = 1


INFO_NAME = "info.json"


MANIFEST_NAME = "manifest.jsonl"


PARQUET_NAME = "manifest.parquet"


FEATURES_NAME = "features.safetensors"


TARGETS = ("miou", "oa")


FEATURE_KEYS = ("encoder", "prediction")


@dataclass
class LabelledImages:
    """Where the labelled windows come from.

    Attributes:
        images: GeoTIFF files, folders or globs (empty: the synthetic world's Sentinel-2 scenes).
        labels: Label rasters with class ids (matched to images by location).
        sensor: Registered sensor of the images (None: wavelengths from file tags).
        bands: Band subset, in this order.
        num_classes: Classes K (default: the synthetic world's 7).
        class_names: Names of the K classes.
        ignore_values: Raw label values meaning "unlabelled".
        label_offset: Subtracted from raw labels (1 for classes stored as 1..K).
        synthetic: Synthetic world to use when ``images`` is empty.
        synthetic_sensor: Sensor of the synthetic images.
    """

    images: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sensor: str | None = None
    bands: list[str] | None = None
    num_classes: int | None = None
    class_names: list[str] | None = None
    ignore_values: list[int] = field(default_factory=list)
    label_offset: int = 0
    synthetic: SyntheticWorldConfig | None = None
    synthetic_sensor: str = "sentinel2_l1c"

    def files(self) -> tuple[list[Path], list[Path]]:
        """(images, labels); the synthetic world is generated on first use."""
        if self.images:
            return expand_paths(self.images), expand_paths(self.labels)
        root = ensure_synthetic_world(config=self.synthetic or SyntheticWorldConfig())
        if self.sensor is None:
            self.sensor = self.synthetic_sensor
        return scene_files(root, self.synthetic_sensor), scene_files(root, "labels")

    def classes(self) -> list[str]:
        """Class names (K of them)."""
        if self.class_names:
            return list(self.class_names)
        if self.num_classes is not None:
            return [f"class_{i}" for i in range(self.num_classes)]
        if self.images:
            raise ValueError("give class_names or num_classes for your labels")
        return list(CLASS_NAMES)


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

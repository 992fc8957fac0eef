"""Building segmentation-quality (SQA) dataset folders: run segmenters over labelled
windows, score them against the labels and write features, targets and the manifest."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import default_collate
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_jaccard_index

from rsfm.band_stats import BandStats
from rsfm.data.datamodules.pretrain import files_by_crs
from rsfm.data.datamodules.sqa import SQADataModule
from rsfm.data.labels import IGNORE_INDEX, LabelledWindows, LabelSpec
from rsfm.data.raster import SensorRasterDataset
from rsfm.data.sqa_records import (
    FEATURE_KEYS,
    FEATURES_NAME,
    FORMAT_VERSION,
    INFO_NAME,
    MANIFEST_NAME,
    PARQUET_NAME,
    LabelledImages,
)
from rsfm.data.stats import compute_band_stats
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.windows import GridWindows
from rsfm.models.sqa import Segmenter, resolve_segmenters, segmenter_features

log = logging.getLogger(__name__)


def _label_files_for(labels: list[Path], image: Path) -> list[str]:
    """Label rasters overlapping the image (all of them when none is found)."""
    with rasterio.open(image) as src:
        crs, (x0, y0, x1, y1) = src.crs, src.bounds
    hits = []
    for path in labels:
        with rasterio.open(path) as src:
            b = src.bounds
            if src.crs == crs and b.left < x1 and b.right > x0 and b.bottom < y1 and b.top > y0:
                hits.append(str(path))
    return hits or [str(p) for p in labels]


def per_image_accuracy(
    pred: torch.Tensor, mask: torch.Tensor, num_classes: int
) -> tuple[list[float], list[float]]:
    """Per-image overall accuracy and mIoU (classes absent from both maps are left out).

    Args:
        pred: Predicted class ids int64 [B, H, W].
        mask: Class ids int64 [B, H, W], ``IGNORE_INDEX`` for unlabelled pixels.
    """
    oa, miou = [], []
    for p, t in zip(pred, mask, strict=True):
        args = dict(num_classes=num_classes, ignore_index=IGNORE_INDEX)
        oa.append(float(multiclass_accuracy(p[None], t[None], average="micro", **args)))
        miou.append(float(multiclass_jaccard_index(p[None], t[None], average="macro", **args)))
    return oa, miou


def _window_batches(
    file: Path, source: LabelledImages, label_files: list[str], patch_size: int, stride: int
) -> tuple[SensorRasterDataset, LabelledWindows]:
    dataset = SensorRasterDataset(
        [str(file)],
        sensor=source.sensor,
        bands=source.bands,
        label_paths=label_files,
        skip_empty=True,
        nonfinite="mask",
        label_ignore_index=IGNORE_INDEX,
    )
    spec = LabelSpec("segmentation", len(source.classes()), source.ignore_values,
                     source.label_offset)  # fmt: skip
    return dataset, LabelledWindows(GridWindows(dataset, patch_size, stride), spec)


def _dataset_stats(files: list[Path], source: LabelledImages, samples: int) -> BandStats:
    raw = SensorRasterDataset(
        [str(f) for f in files_by_crs(files)[0]],
        sensor=source.sensor,
        bands=source.bands,
        skip_empty=True,
        nonfinite="mask",
    )
    return compute_band_stats(raw, n_samples=samples, patch_size=64)


def build_sqa_dataset(
    segmenters: Sequence[str | nn.Module | Segmenter | tuple[str, nn.Module]],
    output_dir: str | os.PathLike[str],
    source: LabelledImages | None = None,
    *,
    patch_size: int = 32,
    stride: int | None = None,
    max_windows_per_file: int | None = None,
    min_labelled_fraction: float = 0.5,
    normalization: BandStats | None = None,
    stats_samples: int = 32,
    batch_size: int = 16,
    hub: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Run segmenters over labelled windows; write a quality-assessment dataset folder.

    Args:
        segmenters: Hub names, entry folders, ``(id, module)`` pairs, modules with a
            ``segmenter_id``, or :class:`Segmenter` objects.
        output_dir: Folder to write (atomically: built beside it, then renamed).
        source: The labelled images (default: the synthetic world and its labels).
        patch_size: Window side in pixels.
        stride: Grid step in pixels (default: ``patch_size``).
        max_windows_per_file: Keep at most this many windows per file (evenly spaced).
        min_labelled_fraction: Skip windows with fewer labelled, valid pixels.
        normalization: Statistics of the images (default: computed from them).
        stats_samples: Windows used to compute the statistics.
        batch_size: Windows per forward pass.
        hub: Hub of named segmenters.
        overwrite: Replace an existing folder.

    Returns:
        The dataset folder.

    Raises:
        FileExistsError: If the folder holds a dataset and ``overwrite`` is False.
        ValueError: If no window has enough labelled pixels.
    """
    target = Path(output_dir).expanduser()
    if (target / INFO_NAME).exists() and not overwrite:
        raise FileExistsError(f"{target} already holds an SQA dataset; pass overwrite=True")
    source = source or LabelledImages()
    models = resolve_segmenters(segmenters, hub)
    images, labels = source.files()
    classes = source.classes()
    stats = normalization or _dataset_stats(images, source, stats_samples)
    records: list[dict[str, Any]] = []
    features: dict[str, list[torch.Tensor]] = {
        f"{s.id}/{k}": [] for s in models for k in FEATURE_KEYS
    }
    rows = {s.id: 0 for s in models}
    image_id = 0
    for file in images:
        dataset, windows = _window_batches(
            file, source, _label_files_for(labels, file), patch_size, stride or patch_size
        )
        indexes = np.arange(len(windows))
        if max_windows_per_file and len(indexes) > max_windows_per_file:
            indexes = np.linspace(0, len(indexes) - 1, max_windows_per_file).round().astype(int)
        samples = []
        for index in indexes:
            sample = windows[int(index)]
            labelled = 0.0 if sample is None else float((sample["mask"] >= 0).float().mean())
            if sample is not None and labelled >= min_labelled_fraction:
                samples.append((sample, labelled))
        for start in range(0, len(samples), batch_size):
            chunk = samples[start : start + batch_size]
            image_ids = list(range(image_id, image_id + len(chunk)))
            image_id += len(chunk)
            records.extend(
                _score_chunk(chunk, image_ids, file, models, stats, classes, features, rows)
            )
    if not records:
        raise ValueError(f"no window of {[str(f) for f in images]} has enough labelled pixels")
    info = {
        "format_version": FORMAT_VERSION,
        "class_names": classes,
        "num_classes": len(classes),
        "sensor": source.sensor,  # None: wavelengths come from the files' tags
        "sensor_name": dataset.sensor.name,
        "bands": dataset.sensor.band_names,
        "wavelengths": [float(w) for w in dataset.wavelengths],
        "patch_size": patch_size,
        "band_stats": stats.to_dict(),
        "n_images": image_id,
        "n_records": len(records),
        "feature_keys": list(FEATURE_KEYS),
        "segmenters": {
            s.id: {
                "source": s.source,
                "normalization": s.normalization.to_dict() if s.normalization else None,
                "feature_dims": {k: int(features[f"{s.id}/{k}"][0].shape[1]) for k in FEATURE_KEYS},
                "features": "rsfm.models.sqa.segmenter_features",
            }
            for s in models
        },
    }
    tensors = {k: torch.cat(v).contiguous() for k, v in features.items()}
    _write_folder(target, info, records, tensors)
    return target


def _score_chunk(
    chunk: list[tuple[dict[str, Any], float]],
    image_ids: list[int],
    file: Path,
    models: list[Segmenter],
    stats: BandStats,
    classes: list[str],
    features: dict[str, list[torch.Tensor]],
    rows: dict[str, int],
) -> list[dict[str, Any]]:
    """Score every segmenter on one batch of windows; append features; return the records."""
    batch = default_collate([{k: s[k] for k in ("image", "valid", "mask")} for s, _ in chunk])
    raw, valid, mask = batch["image"], batch["valid"], batch["mask"]
    wavelengths = chunk[0][0]["wavelengths"]
    counts = torch.stack([torch.bincount(m[m >= 0], minlength=len(classes)).float() for m in mask])
    class_mix = counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)
    out = []
    for seg in models:
        norm = seg.normalization or stats
        image = norm.normalize(raw, wavelengths).masked_fill(~valid[:, None], 0.0)
        was_training = seg.model.training
        seg.model.eval()
        logits, feats = segmenter_features(seg.model, image, wavelengths, valid)
        seg.model.train(was_training)
        pred = logits.argmax(dim=1)
        oa, miou = per_image_accuracy(pred, mask.masked_fill(~valid, IGNORE_INDEX), len(classes))
        for key in FEATURE_KEYS:
            features[f"{seg.id}/{key}"].append(feats[key].cpu())
        for i, (sample, labelled) in enumerate(chunk):
            out.append(
                {
                    "image_id": image_ids[i],
                    "file": str(file),
                    "crs": sample["crs"].to_string(),
                    "bounds": [float(v) for v in sample["bounds"]],
                    "segmenter": seg.id,
                    "feature_row": rows[seg.id] + i,
                    "oa": oa[i],
                    "miou": miou[i],
                    "labelled_fraction": labelled,
                    "class_fractions": [round(float(v), 6) for v in class_mix[i]],
                }
            )
        rows[seg.id] += len(chunk)
    return out


def _write_folder(
    target: Path, info: dict[str, Any], records: list[dict[str, Any]], tensors: dict
) -> None:
    """Write the dataset files in a sibling temporary folder, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for i, record in enumerate(records):
            record["record"] = i
        (staged / INFO_NAME).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
        lines = "".join(json.dumps(r) + "\n" for r in records)
        (staged / MANIFEST_NAME).write_text(lines, encoding="utf-8")
        save_file(tensors, str(staged / FEATURES_NAME), metadata={"format": "pt"})
        try:
            import pandas as pd

            pd.DataFrame(records).to_parquet(staged / PARQUET_NAME)
        except ImportError:  # pandas needs pyarrow or fastparquet for Parquet; JSONL suffices
            log.info("pyarrow is not installed: %s not written", PARQUET_NAME)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staged, target)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


class SQABuildingDataModule(SQADataModule):
    """An :class:`SQADataModule` that builds its dataset folder first when it is missing.

    When ``root`` holds no dataset, :meth:`prepare_data` builds one with
    :func:`build_sqa_dataset` from ``segmenters`` (hub names or entry folders) plus, with
    ``zoo``, the synthetic segmenters of :func:`synthetic_segmenters` (``zoo`` holds its
    keyword arguments; the world is ``synthetic``), over ``images``/``labels`` or the world.

    Args:
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
        **kwargs: :class:`SQADataModule` arguments (root, target, feature keys, split, loaders).
    """

    def __init__(
        self,
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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
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

    def prepare_data(self) -> None:
        """Build the dataset folder unless it exists."""
        if (self.root / INFO_NAME).exists():
            return
        specs: list[Any] = list(self.segmenters)
        stats = None
        if self.zoo is not None:
            from rsfm.curation.segmenter_zoo import synthetic_segmenters  # trains models

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

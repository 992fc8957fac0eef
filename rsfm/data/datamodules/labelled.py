"""Labelled windows for fine-tuning: segmentation, (multi-label) classification, regression.

One ``LabelledGeoDataModule`` serves every fine-tuning task from GeoTIFF images plus labels:

- ``segmentation``: per-pixel class ids from label rasters -> sample ``mask`` int64 [H, W]
  (``-1`` = unlabelled, nodata, ignored value or invalid image pixel).
- ``classification``: the window's majority class of its labelled pixels -> ``label`` int64.
- ``multilabel``: every class covering more than ``multilabel_threshold`` of the labelled pixels
  -> ``label`` float32 [K] (multi-hot); or image-level labels from a GeoTIFF tag (BigEarthNet
  files written by ``datasets/bigearthnet/prepare.py`` carry ``LABELS``) or a JSON table.
- ``regression``: a continuous target raster read on the window's grid -> ``target`` float32
  [H, W] (NaN = unknown).

Without images it uses the embedded synthetic world: Sentinel-2 windows with the 10 m land-cover
labels, and for regression the *fractional vegetation cover* of every 10 m pixel (the share of
the pixel's area covered by forest, grassland or cropland, computed exactly from the scene's 2 m
land-cover map) written once as ``scene_*/vegetation_fraction.tif`` beside the world.

The label rules, target rasters and labelled-window dataset live in :mod:`rsfm.data.labels`
(re-exported here).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import rasterio
from torch.utils.data import ConcatDataset, Dataset

from rsfm.band_stats import BandStats
from rsfm.data.datamodules.base import (
    BaseDataModule,
    DataFacts,
    as_band_stats,
)
from rsfm.data.datamodules.pretrain import expand_paths, files_by_crs, split_files
from rsfm.data.labels import (
    IGNORE_INDEX,
    TASKS,
    ImageLabels,
    LabelledWindows,
    LabelSpec,
    TargetRasters,
    resolve_class_names,
    vegetation_fraction_rasters,
)
from rsfm.data.labels import file_labels as _file_labels
from rsfm.data.raster import SensorRasterDataset, refuse_empty_rasters
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.world import ensure_synthetic_world, scene_files
from rsfm.data.windows import GridWindows, RandomWindows

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- datamodule
class LabelledGeoDataModule(BaseDataModule):
    """Labelled GeoTIFF windows for fine-tuning (the synthetic world by default).

    Args:
        task: ``segmentation``, ``classification``, ``multilabel`` or ``regression``.
        images: Image files, directories or globs (None: the synthetic world).
        labels: Label rasters (class ids) or, for regression, target rasters.
        val_images: Validation images; when empty, every fifth file (or the one file) is held out.
        val_labels: Validation label rasters (default: ``labels``; they are matched by location).
        sensor: Registered sensor of the images (None: wavelengths from the file tags).
        bands: Band subset, in this order.
        class_names: Class names (default: ``class_0..``; the synthetic world's 7 classes).
        num_classes: Number of classes K (default: ``len(class_names)``).
        ignore_values: Raw label values meaning "unlabelled".
        label_offset: Subtracted from raw labels (1 for labels stored as 1..K).
        multilabel_threshold: Area share above which a class is present in a window.
        min_labelled_fraction: Skip classification windows with fewer labelled pixels.
        label_tag: Image-level labels from this GeoTIFF tag (JSON list of class names).
        label_table: Image-level labels from a JSON file ``{file stem: [names] | {"labels": ..}}``.
        synthetic: Synthetic-world settings (when no images are given).
        synthetic_sensor: Sensor of the synthetic images.
        patch_size: Window side in pixels.
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
        samples_per_epoch: Random training windows per epoch.
        val_samples: Validation windows (a fixed grid, evenly thinned).
        val_stride: Step of the validation grid in pixels (default: ``patch_size``).
        normalize: Apply per-band statistics (computed, or taken from the pretrained model).
        stats_samples: Windows used to compute statistics.
        nonfinite: NaN/inf pixels that are not nodata: ``mask`` them or raise (``error``).
        seed: Seed of the window sampling.
    """

    def __init__(
        self,
        task: str = "segmentation",
        images: list[str] | None = None,
        labels: list[str] | None = None,
        val_images: list[str] | None = None,
        val_labels: list[str] | None = None,
        sensor: str | None = None,
        bands: list[str] | None = None,
        class_names: list[str] | None = None,
        num_classes: int | None = None,
        ignore_values: list[int] | None = None,
        label_offset: int = 0,
        multilabel_threshold: float = 0.05,
        min_labelled_fraction: float = 0.25,
        label_tag: str | None = None,
        label_table: str | None = None,
        synthetic: SyntheticWorldConfig | None = None,
        synthetic_sensor: str = "sentinel2_l1c",
        patch_size: int = 32,
        batch_size: int = 16,
        num_workers: int = 0,
        samples_per_epoch: int = 256,
        val_samples: int = 64,
        val_stride: int | None = None,
        normalize: bool = True,
        stats_samples: int = 64,
        nonfinite: str = "mask",
        seed: int = 0,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
        if label_tag and label_table:
            raise ValueError("give label_tag or label_table, not both")
        if (label_tag or label_table) and task not in ("classification", "multilabel"):
            raise ValueError(
                "image-level labels (label_tag/label_table) need a classification task"
            )
        if images and not (labels or label_tag or label_table):
            raise ValueError("images need labels (rasters), label_tag or label_table")
        super().__init__(batch_size, num_workers)
        self.task = task
        self.images = list(images or [])
        self.labels = list(labels or [])
        self.val_images = list(val_images or [])
        self.val_labels = list(val_labels or [])
        self.sensor = sensor
        self.bands = bands
        self.class_names = resolve_class_names(task, class_names, num_classes, not self.images)
        self.num_classes = len(self.class_names)
        self.spec = LabelSpec(
            task,
            self.num_classes,
            list(ignore_values or []),
            label_offset,
            multilabel_threshold,
            min_labelled_fraction,
        )
        self.label_tag = label_tag
        self.label_table = label_table
        self.synthetic = synthetic
        self.synthetic_sensor = synthetic_sensor
        self.patch_size = patch_size
        self.samples_per_epoch = samples_per_epoch
        self.val_samples = val_samples
        self.val_stride = val_stride
        self.normalize = normalize
        self.stats_samples = stats_samples
        self.nonfinite = nonfinite
        self.seed = seed
        self.data_root: Path | None = None
        self._datasets: list[SensorRasterDataset] = []

    # -- sources -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the synthetic world (and derived targets) once, when no images are given."""
        if not self.images:
            root = ensure_synthetic_world(config=self.synthetic or SyntheticWorldConfig())
            if self.task == "regression":
                vegetation_fraction_rasters(root)

    def _sources(self) -> tuple[list[Path], list[Path], list[Path], list[Path]]:
        """(train images, train labels, val images, val labels)."""
        if self.images:
            train, val = split_files(expand_paths(self.images), self.val_images)
            labels = expand_paths(self.labels) if self.labels else []
            val_labels = expand_paths(self.val_labels) if self.val_labels else labels
            return train, labels, val, val_labels
        root = ensure_synthetic_world(config=self.synthetic or SyntheticWorldConfig())
        self.data_root = root
        self.sensor = self.sensor or self.synthetic_sensor
        images = scene_files(root, self.synthetic_sensor)
        if self.task == "regression":
            labels = vegetation_fraction_rasters(root)
        else:
            labels = scene_files(root, "labels")
        return images[:-1], labels[:-1], images[-1:], labels[-1:]

    @property
    def stats_key(self) -> str:
        """Name the statistics of these images are stored under (sensor or first file stem)."""
        return self.sensor or Path(expand_paths(self.images)[0]).stem

    def _compute_stats(self, train_files: list[Path]) -> None:
        refuse_empty_rasters(train_files, patch_size=self.patch_size)  # before statistics
        if not self.normalize:
            return
        self._cached_band_stats(
            self.stats_key,
            train_files,
            self.bands,
            lambda: SensorRasterDataset(
                [str(f) for f in files_by_crs(train_files)[0]],
                sensor=self.sensor,
                bands=self.bands,
                skip_empty=True,
                nonfinite=self.nonfinite,
            ),  # fmt: skip
            folder=self.data_root,  # the synthetic world: shared with GeoDataModule
        )

    def _windows(
        self, images: list[Path], labels: list[Path], train: bool
    ) -> list[LabelledWindows]:
        table = json.loads(Path(self.label_table).read_text()) if self.label_table else None
        image_level = self.label_tag is not None or table is not None
        groups = files_by_crs(images)
        out = []
        for k, group in enumerate(groups):
            dataset = SensorRasterDataset(
                [str(f) for f in group],
                sensor=self.sensor,
                bands=self.bands,
                label_paths=_same_crs(labels, group[0]) if self._label_rasters() else None,
                normalization=self.band_stats.get(self.stats_key) if self.normalize else None,
                skip_empty=True,
                nonfinite=self.nonfinite,
                label_ignore_index=IGNORE_INDEX,
            )
            self._datasets.append(self._feed(self.stats_key, dataset))
            n = max(1, (self.samples_per_epoch if train else self.val_samples) // len(groups))
            windows: Dataset
            if train:
                windows = RandomWindows(dataset, self.patch_size, n, seed=self.seed + 1000 * k)
            else:
                windows = GridWindows(dataset, self.patch_size, self.val_stride, limit=n)
            image_labels = None
            if image_level:
                values = _file_labels(group, self.class_names, self.task, self.label_tag, table)
                image_labels = ImageLabels(group, dataset._rio_crs, values)
            targets = TargetRasters(labels) if self.task == "regression" else None
            out.append(LabelledWindows(windows, self.spec, targets, image_labels))
        return out

    def _label_rasters(self) -> bool:  # class-id rasters read as the samples' `mask`
        return self.task != "regression" and not (self.label_tag or self.label_table)

    def setup(self, stage: str | None = None) -> None:
        """Build the training and validation windows (and statistics on first use)."""
        train_images, train_labels, val_images, val_labels = self._sources()
        self._compute_stats(train_images)
        self._datasets, self._fed = [], []
        self.train_dataset = ConcatDataset(self._windows(train_images, train_labels, train=True))
        self.val_dataset = ConcatDataset(self._windows(val_images, val_labels, train=False))

    # -- band statistics contract --------------------------------------------------------------
    def use_band_stats(self, stats: Mapping[str, BandStats | Mapping[str, Any]]) -> dict[str, str]:
        """Normalise with statistics that came with pretrained weights, when they fit.

        The entry named like this data's sensor is preferred; otherwise the first whose
        wavelengths cover every band. Call after :meth:`setup`.

        Returns:
            ``{sensor: name of the statistics used}``; empty when the own ones are kept.
        """
        if not self.normalize or not stats or not self._datasets:
            return {}
        wavelengths = self._datasets[0].wavelengths
        candidates = sorted(stats.items(), key=lambda item: item[0] != self.stats_key)
        for name, value in candidates:
            chosen = as_band_stats(value)
            try:
                chosen.rows_for(wavelengths)
            except ValueError:
                continue
            self.band_stats[self.stats_key] = chosen
            for dataset in self._datasets:
                dataset.normalization = chosen
            log.info(
                "normalising %s with the pretrained model's %r statistics", self.stats_key, name
            )
            return {self.stats_key: name}
        return {}

    def data_facts(self) -> DataFacts:
        """The sensor and bands fed, the classes, and the image and label files read."""
        name = "rsfm-synthetic-world" if self.data_root is not None else "geotiff"
        facts = self._raster_facts(f"{name}:{self.task}", self.data_root)
        facts.class_names = list(self.class_names) if self.task != "regression" else None
        return facts


def _same_crs(labels: list[Path], image: Path) -> list[str]:
    """Label files in the image's CRS (others are not read with it), or all when none are."""
    with rasterio.open(image) as src:
        crs = src.crs
    same = []
    for path in labels:
        with rasterio.open(path) as src:
            if src.crs == crs:
                same.append(str(path))
    return same or [str(p) for p in labels]

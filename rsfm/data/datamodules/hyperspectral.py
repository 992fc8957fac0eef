"""Hyperspectral training data: bad bands dropped by config, rare positives sampled more often.

:class:`HyperspectralDataModule` is a :class:`~rsfm.data.datamodules.labelled.LabelledGeoDataModule`
for
segmentation with three additions:

- **Bad bands**: with ``drop_bad_bands`` the bands flagged ``bbl=0`` in the first image's tags
  (ENVI / EnMAP convention) are left out, and so is every band inside ``bad_band_ranges_nm``
  (e.g. the water-vapour windows). The kept bands are the ones statistics, model cards and
  ``rsfm tile`` see.
- **Weighted sampling**: training draws from a fixed pool of ``candidate_windows`` random windows;
  a window holding a pixel of ``positive_classes`` is drawn ``positive_weight`` times as often
  (``torch.utils.data.WeightedRandomSampler``), so rare targets (plumes) fill the batches.
- **Normalisation with outlier cut**: the per-band statistics clip to the 1st/99th percentiles
  before standardising (:class:`~rsfm.data.stats.BandStats`), computed on the training
  images.

Without images it serves the synthetic plume world (:mod:`rsfm.data.synthetic.hyperspectral`).
``NEON_AOP_369`` maps the 369-band NEON crops (water-vapour bands removed, no wavelengths in the
files) onto NEON AOP band centres; pass ``sensor: neon_aop_369``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import from_bounds
from torch.utils.data import ConcatDataset, DataLoader, WeightedRandomSampler

from rsfm.data.datamodules.base import DataFacts
from rsfm.data.datamodules.labelled import LabelledGeoDataModule
from rsfm.data.grid import canonical_band_name
from rsfm.data.labels import LabelledWindows
from rsfm.data.synthetic.hyperspectral import (
    CLASS_NAMES,
    SENSOR_NAME,
    PlumeWorldConfig,
    ensure_plume_world,
    in_windows,
    plume_scene_files,
)
from rsfm.data.windows import RandomWindows
from rsfm.sensors import Sensor, bad_band_mask, get_sensor, sensor_from_raster

# NEON AOP NIS crops of 369 bands (DeepTreeAttention's): the band table lives in rsfm.sensors.
NEON_AOP_369 = get_sensor("neon_aop_369")


def good_band_names(
    path: str | Path,
    sensor: str | Sensor | None,
    drop_bad_bands: bool = True,
    bad_band_ranges_nm: list[list[float]] | None = None,
) -> list[str] | None:
    """Names of the bands to keep (None when every band is kept).

    Args:
        path: An image of the dataset (its ``bbl`` tags flag bad bands).
        sensor: The images' registered sensor, or None to describe it from the file's tags.
        drop_bad_bands: Leave out bands flagged ``bbl=0``.
        bad_band_ranges_nm: Also leave out bands whose centre lies in one of these [low, high].
    """
    chosen = get_sensor(sensor) if sensor is not None else sensor_from_raster(path)
    keep = np.ones(len(chosen), dtype=bool)
    if drop_bad_bands:
        flags = bad_band_mask(path)
        with rasterio.open(path) as src:
            descriptions = [canonical_band_name(d) if d else "" for d in src.descriptions]
        names = [canonical_band_name(b.name) for b in chosen.bands]
        if all(descriptions) and set(names) <= set(descriptions):  # map the file's order
            bad = {d for d, ok in zip(descriptions, flags, strict=True) if not ok}
            keep &= np.array([n not in bad for n in names])
        elif len(flags) == len(chosen):
            keep &= flags
    if bad_band_ranges_nm:
        windows = tuple((float(lo), float(hi)) for lo, hi in bad_band_ranges_nm)
        keep &= ~in_windows(chosen.wavelengths, windows)
    if not keep.any():
        raise ValueError(f"{path}: every band is flagged bad; nothing left to train on")
    return None if keep.all() else [b.name for b, k in zip(chosen.bands, keep, strict=True) if k]


def window_has_positive(
    label_paths: list[str],
    bounds: tuple[float, float, float, float],
    positive_values: list[int],
) -> bool:
    """Whether any label raster holds one of ``positive_values`` inside ``bounds``."""
    for path in label_paths:
        with rasterio.open(path) as src:
            left, bottom, right, top = src.bounds
            if bounds[0] >= right or bounds[2] <= left or bounds[1] >= top or bounds[3] <= bottom:
                continue
            window = from_bounds(*bounds, transform=src.transform)
            values = src.read(1, window=window, boundless=True, fill_value=src.nodata or 0)
        if np.isin(values, positive_values).any():
            return True
    return False


class HyperspectralDataModule(LabelledGeoDataModule):
    """Hyperspectral segmentation windows (see the module docstring).

    Args:
        images: Image files, folders or globs (None: the synthetic plume world).
        labels: Label rasters (class ids).
        val_images: Validation images (default: every fifth file, or the one file).
        val_labels: Validation label rasters (default: ``labels``).
        sensor: Registered sensor of the images (None: wavelengths from the file tags).
        bands: Band names to use (overrides the bad-band rules).
        class_names: Class names (default: background, plume).
        num_classes: Classes K (default: ``len(class_names)``).
        ignore_values: Raw label values meaning "unlabelled".
        label_offset: Subtracted from raw labels (1 for labels stored as 1..K).
        drop_bad_bands: Leave out bands flagged ``bbl=0`` in the files.
        bad_band_ranges_nm: Leave out bands inside these ``[low, high]`` nm windows.
        positive_classes: Class ids (after the offset) whose windows are oversampled.
        positive_weight: Sampling weight of windows with a positive pixel (others: 1).
        candidate_windows: Size of the pool of training windows the sampler draws from.
        plume_world: Synthetic plume world settings (when no images are given).
        patch_size: Window side in pixels.
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
        samples_per_epoch: Training windows per epoch.
        val_samples: Validation windows (a fixed grid, evenly thinned).
        val_stride: Step of the validation grid (default: ``patch_size``).
        normalize: Standardise with percentile-clipped per-band statistics.
        stats_samples: Windows used to compute the statistics.
        nonfinite: ``mask`` (or ``error`` on) NaN/inf pixels that are not nodata.
        seed: Seed of window sampling.
    """

    def __init__(
        self,
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
        drop_bad_bands: bool = True,
        bad_band_ranges_nm: list[list[float]] | None = None,
        positive_classes: list[int] | None = None,
        positive_weight: float = 4.0,
        candidate_windows: int = 512,
        plume_world: PlumeWorldConfig | None = None,
        patch_size: int = 32,
        batch_size: int = 8,
        num_workers: int = 0,
        samples_per_epoch: int = 128,
        val_samples: int = 64,
        val_stride: int | None = None,
        normalize: bool = True,
        stats_samples: int = 64,
        nonfinite: str = "mask",
        seed: int = 0,
    ) -> None:
        if not images and class_names is None and num_classes is None:
            class_names = list(CLASS_NAMES)
        super().__init__(
            task="segmentation",
            images=images,
            labels=labels,
            val_images=val_images,
            val_labels=val_labels,
            sensor=sensor,
            bands=bands,
            class_names=class_names,
            num_classes=num_classes,
            ignore_values=ignore_values,
            label_offset=label_offset,
            patch_size=patch_size,
            batch_size=batch_size,
            num_workers=num_workers,
            samples_per_epoch=samples_per_epoch,
            val_samples=val_samples,
            val_stride=val_stride,
            normalize=normalize,
            stats_samples=stats_samples,
            nonfinite=nonfinite,
            seed=seed,
        )
        self.drop_bad_bands = drop_bad_bands
        self.bad_band_ranges_nm = bad_band_ranges_nm
        self.positive_classes = list(positive_classes if positive_classes is not None else [1])
        self.positive_weight = float(positive_weight)
        self.candidate_windows = int(candidate_windows)
        self.plume_world = plume_world
        self.sample_weights: torch.Tensor | None = None
        self.bad_bands: list[str] = []  # bands left out by the bad-band rules (after setup)

    # -- sources -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Generate the synthetic plume world once, when no images are given."""
        if not self.images:
            ensure_plume_world(config=self.plume_world)

    def _sources(self) -> tuple[list[Path], list[Path], list[Path], list[Path]]:
        """(train images, train labels, val images, val labels); synthetic: last 2 scenes val."""
        if self.images:
            return super()._sources()
        root = ensure_plume_world(config=self.plume_world)
        self.data_root = root
        self.sensor = self.sensor or SENSOR_NAME
        images, masks = plume_scene_files(root)
        held_out = 2 if len(images) > 2 else 1
        return images[:-held_out], masks[:-held_out], images[-held_out:], masks[-held_out:]

    # -- setup ---------------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Resolve the kept bands, statistics, the weighted training pool and validation grid."""
        train_images, train_labels, val_images, val_labels = self._sources()
        if self.bands is None:
            self.bands = good_band_names(
                train_images[0], self.sensor, self.drop_bad_bands, self.bad_band_ranges_nm
            )
            if self.bands is not None:
                kept = set(self.bands)
                every = (
                    get_sensor(self.sensor) if self.sensor else sensor_from_raster(train_images[0])
                )
                self.bad_bands = [b for b in every.band_names if b not in kept]
        self._compute_stats(train_images)
        self._datasets, self._fed = [], []
        parts = self._windows(train_images, train_labels, train=True)
        weights = []
        pool = max(1, self.candidate_windows // len(parts))
        for k, part in enumerate(parts):
            dataset = part.windows.dataset
            part.windows = RandomWindows(
                dataset, self.patch_size, pool, seed=self.seed + 1000 * k, fixed=True
            )
            weights += self._window_weights(part)
        self.train_dataset = ConcatDataset(parts)
        self.sample_weights = torch.tensor(weights, dtype=torch.float64)
        self.val_dataset = ConcatDataset(self._windows(val_images, val_labels, train=False))

    def _window_weights(self, part: LabelledWindows) -> list[float]:
        """Sampling weight of each pool window (``positive_weight`` if it holds a positive)."""
        labels = [str(p) for p in part.windows.dataset.label_files]
        raw_positive = [c + self.spec.label_offset for c in self.positive_classes]
        weights = []
        for index in range(len(part.windows)):
            x, y, _ = part.windows.query(index)
            bounds = (x.start, y.start, x.stop, y.stop)
            positive = bool(labels) and window_has_positive(labels, bounds, raw_positive)
            weights.append(self.positive_weight if positive else 1.0)
        return weights

    @property
    def positive_share(self) -> float:
        """Share of the training pool's windows that hold a positive pixel."""
        if self.sample_weights is None or not len(self.sample_weights):
            return 0.0
        return float((self.sample_weights > 1.0).double().mean())

    # -- loaders -------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """``samples_per_epoch`` windows drawn from the pool by their weights."""
        generator = torch.Generator().manual_seed(self.seed)
        sampler = WeightedRandomSampler(
            self.sample_weights, self.samples_per_epoch, replacement=True, generator=generator
        )
        return self._loader(self.train_dataset, shuffle=False, sampler=sampler, drop_last=True)

    def data_facts(self) -> DataFacts:
        """As the labelled datamodule's, plus the bands the bad-band rules left out."""
        facts = super().data_facts()
        if self.bad_bands:
            facts.bad_bands = {self.stats_key: list(self.bad_bands)}
        return facts

"""LightningDataModule over GeoTIFF sources (or the embedded synthetic world) for pretraining."""

from __future__ import annotations

import glob
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rasterio
from torch.utils.data import ConcatDataset, Dataset

from rsfm.data.datamodules.base import BaseDataModule, DataFacts
from rsfm.data.grid import find_rasters
from rsfm.data.paired import CoRegisteredPairDataset
from rsfm.data.raster import SensorRasterDataset, refuse_empty_rasters
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.world import ensure_synthetic_world, scene_files
from rsfm.data.windows import GridWindows, RandomWindows

log = logging.getLogger(__name__)


@dataclass
class RasterSource:
    """GeoTIFFs of one sensor.

    Attributes:
        paths: Files, directories or globs.
        sensor: Registered sensor name, or None to read wavelengths from the files' tags.
        bands: Optional subset of band names.
        val_paths: Validation files; when empty, every fifth file (or, with one file, the same
            file with fixed windows) is held out.
    """

    paths: list[str]
    sensor: str | None = None
    bands: list[str] | None = None
    val_paths: list[str] = field(default_factory=list)


@dataclass
class PairSource:
    """Two co-registered sensors of the same places, for cross-sensor token mixup.

    Attributes:
        first: The sensor whose grid the pair is read on.
        second: The sensor resampled onto the first's grid.
    """

    first: RasterSource
    second: RasterSource


def expand_paths(paths: list[str]) -> list[Path]:
    """Files, directories and glob patterns → sorted GeoTIFF paths."""
    items: list[str] = []
    for entry in paths:
        matches = sorted(glob.glob(os.path.expanduser(entry))) if glob.has_magic(entry) else []
        items.extend(matches or [os.path.expanduser(entry)])
    return find_rasters(items)


def files_by_crs(files: list[Path]) -> list[list[Path]]:
    """Group files by CRS so each dataset reads natively (no reprojection across UTM zones)."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for f in files:
        with rasterio.open(f) as ds:
            groups[str(ds.crs)].append(f)
    return list(groups.values())


def split_files(files: list[Path], val_paths: list[str]) -> tuple[list[Path], list[Path]]:
    if val_paths:
        return files, expand_paths(val_paths)
    if len(files) == 1:
        return files, files
    val = files[4::5] or files[-1:]
    return [f for f in files if f not in val], val


class GeoDataModule(BaseDataModule):
    """Random windows for training, grid windows for validation, over GeoTIFF sources.

    With no ``sources`` and no ``pairs`` the embedded synthetic world is generated (once, cached)
    and used: single-sensor windows of ``synthetic_sensors`` and co-registered pairs of
    ``synthetic_pairs``. Per-band normalisation statistics are computed from training windows on
    first use and cached, keyed by the training files and bands (``$RSFM_CACHE/band_stats``;
    never in your data folders; the synthetic world's beside it), then reused.

    Args:
        sources: Single-sensor sources.
        pairs: Co-registered sensor pairs (batches carry ``pair_image``/``pair_wavelengths``).
        synthetic: Synthetic-world settings (used when no sources/pairs are given).
        synthetic_sensors: Synthetic sensors used as single sources.
        synthetic_pairs: Synthetic sensor pairs (first, second).
        patch_size: Window side in pixels.
        batch_size: Samples per batch (per loader when single and paired loaders are combined).
        num_workers: DataLoader worker processes.
        samples_per_epoch: Random training windows per epoch (per loader).
        val_samples: Maximum validation windows (per loader).
        normalize: Apply per-band percentile-clip + standardisation statistics.
        stats_samples: Windows used to compute statistics.
        skip_empty: Skip all-nodata windows (counted and logged) instead of raising.
        seed: Base seed of window sampling.
    """

    def __init__(
        self,
        sources: list[RasterSource] | None = None,
        pairs: list[PairSource] | None = None,
        synthetic: SyntheticWorldConfig | None = None,
        synthetic_sensors: list[str] | None = None,
        synthetic_pairs: list[tuple[str, str]] | None = None,
        patch_size: int = 64,
        batch_size: int = 16,
        num_workers: int = 0,
        samples_per_epoch: int = 256,
        val_samples: int = 64,
        normalize: bool = True,
        stats_samples: int = 64,
        skip_empty: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.sources = list(sources or [])
        self.pairs = list(pairs or [])
        self.synthetic = synthetic
        self.synthetic_sensors = (
            ["sentinel2_l1c", "landsat8_sr", "naip"]
            if synthetic_sensors is None
            else list(synthetic_sensors)
        )
        self.synthetic_pairs = (
            [("sentinel2_l1c", "sentinel1_grd")]
            if synthetic_pairs is None
            else [tuple(p) for p in synthetic_pairs]
        )
        self.patch_size = patch_size
        self.samples_per_epoch = samples_per_epoch
        self.val_samples = val_samples
        self.normalize = normalize
        self.stats_samples = stats_samples
        self.skip_empty = skip_empty
        self.seed = seed
        self.data_root: Path | None = None
        self._train: dict[str, Dataset] = {}
        self._val: dict[str, Dataset] = {}

    # -- source resolution -------------------------------------------------------------------
    def _resolved_sources(self) -> tuple[list[RasterSource], list[PairSource]]:
        if self.sources or self.pairs:
            return self.sources, self.pairs
        root = ensure_synthetic_world(config=self.synthetic or SyntheticWorldConfig())
        self.data_root = root

        def src(sensor: str) -> RasterSource:
            files = [str(p) for p in scene_files(root, sensor)]
            return RasterSource(paths=files[:-1], sensor=sensor, val_paths=files[-1:])

        singles = [src(s) for s in self.synthetic_sensors]
        pairs = [PairSource(src(a), src(b)) for a, b in self.synthetic_pairs]
        return singles, pairs

    def prepare_data(self) -> None:
        """Generate the synthetic world once (rank 0) when no sources are configured."""
        if not (self.sources or self.pairs):
            ensure_synthetic_world(config=self.synthetic or SyntheticWorldConfig())

    def _datasets(self, source: RasterSource, files: list[Path]) -> list[SensorRasterDataset]:
        key = source.sensor or files[0].stem
        stats = self.band_stats.get(key) if self.normalize else None
        datasets = [
            SensorRasterDataset(
                [str(f) for f in group],
                sensor=source.sensor,
                bands=source.bands,
                normalization=stats,
                skip_empty=self.skip_empty,
            )
            for group in files_by_crs(files)
        ]
        return [self._feed(key, d) for d in datasets]

    def _stats_for(self, source: RasterSource, train_files: list[Path]) -> None:
        refuse_empty_rasters(train_files, patch_size=self.patch_size)  # before statistics
        if not self.normalize:
            return
        self._cached_band_stats(
            source.sensor or train_files[0].stem,
            train_files,
            source.bands,
            lambda: SensorRasterDataset(
                [str(f) for f in files_by_crs(train_files)[0]],
                sensor=source.sensor,
                bands=source.bands,
                skip_empty=True,
            ),
            folder=self.data_root,  # None (your files): the file-keyed cache
        )

    def setup(self, stage: str | None = None) -> None:
        """Build the training/validation window datasets."""
        singles, pairs = self._resolved_sources()
        self._fed = []
        train: dict[str, list[Dataset]] = defaultdict(list)
        val: dict[str, list[Dataset]] = defaultdict(list)
        for k, source in enumerate(singles):
            train_files, val_files = split_files(expand_paths(source.paths), source.val_paths)
            self._stats_for(source, train_files)
            for d in self._datasets(source, train_files):
                train["single"].append(
                    RandomWindows(
                        d, self.patch_size, self.samples_per_epoch, seed=self.seed + 1000 * k
                    )
                )
            for d in self._datasets(source, val_files):
                val["single"].append(
                    RandomWindows(
                        d,
                        self.patch_size,
                        self.val_samples,
                        seed=self.seed + 7 + 1000 * k,
                        fixed=True,
                    )
                )
        for k, pair in enumerate(pairs):
            first_train, first_val = split_files(
                expand_paths(pair.first.paths), pair.first.val_paths
            )
            second_train, second_val = split_files(
                expand_paths(pair.second.paths), pair.second.val_paths
            )
            self._stats_for(pair.first, first_train)
            self._stats_for(pair.second, second_train)
            for files_a, files_b, split in (
                (first_train, second_train, train),
                (first_val, second_val, val),
            ):
                for a in self._datasets(pair.first, files_a):
                    b_all = self._datasets(pair.second, files_b)
                    for b in b_all:
                        try:
                            paired = CoRegisteredPairDataset(a, b)
                        except ValueError:  # the two groups do not overlap
                            continue
                        fixed = split is val
                        n = self.val_samples if fixed else self.samples_per_epoch
                        split["paired"].append(
                            RandomWindows(
                                paired,
                                self.patch_size,
                                n,
                                seed=self.seed + 500 + 1000 * k,
                                fixed=fixed,
                            )
                        )
        self._train = {k: _concat(v, self.samples_per_epoch) for k, v in train.items()}
        self._val = {k: _concat(v, self.val_samples) for k, v in val.items()}

    def _combined(self, datasets: dict[str, Dataset], shuffle: bool) -> Any:
        return self._combine({k: self._loader(d, shuffle) for k, d in datasets.items()}, shuffle)

    def train_dataloader(self) -> Any:
        """Random windows; single and paired loaders combined when both exist."""
        return self._combined(self._train, shuffle=True)

    def val_dataloader(self) -> Any:
        """Fixed windows from held-out files."""
        return self._combined(self._val, shuffle=False)

    def test_dataloader(self) -> Any:
        """Same windows as validation."""
        return self._combined(self._val, shuffle=False)

    def predict_dataloader(self) -> Any:
        """Grid windows over the validation files (single-sensor sources)."""
        datasets = [GridWindows(w.dataset, self.patch_size) for w in _members(self._val["single"])]
        return self._loader(ConcatDataset(datasets), shuffle=False)

    # -- band statistics contract ------------------------------------------------------------
    def data_facts(self) -> DataFacts:
        """The sensors and bands of every source, with the files read (hashed when small)."""
        name = "rsfm-synthetic-world" if self.data_root is not None else "geotiff"
        return self._raster_facts(f"{name}:pretraining", self.data_root)


def _concat(windows: list[RandomWindows], length: int) -> Dataset:
    """Concatenate window sets, keeping ``length`` windows in total, split evenly."""
    per = max(1, length // len(windows))
    for w in windows:
        w.length = per
    return ConcatDataset(windows)


def _members(dataset: Dataset) -> list[Any]:
    return list(dataset.datasets) if isinstance(dataset, ConcatDataset) else [dataset]

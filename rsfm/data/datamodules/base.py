"""What every rsfm datamodule shares: batching, the four loaders and the band-statistics contract.

:class:`BaseDataModule` owns ``batch_size`` / ``num_workers``, one ``_loader`` and the
train / val / test / predict dataloaders over ``train_dataset`` / ``val_dataset`` /
``test_dataset`` / ``predict_dataset`` (test and predict fall back to validation), as
torchgeo's ``BaseDataModule`` does. A datamodule only builds its datasets in ``setup``.

The one band-statistics contract with the tasks (no duck typing):

- :attr:`BaseDataModule.band_stats`: ``{sensor: BandStats}``, always a dict per sensor, the
  normalisation the datamodule feeds the model with;
- :meth:`BaseDataModule.use_band_stats`: impose statistics that came with a checkpoint or
  pretrained weights (``{name: BandStats | dict}``), applied to datasets already built;
- :meth:`BaseDataModule.data_facts`: what the model is fed (sensors and band names, bad bands,
  class names, window size, dataset provenance), as plain data: the task turns it into the
  training stage of its checkpoint (``rsfm.hub.checkpoint_keys`` is above this floor).

Helpers for raster datamodules: ``_cached_band_stats`` (compute once from training windows,
cache), ``_feed`` (remember each dataset built, so imposed statistics reach it and
``data_facts`` can name its sensor, bands and files).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import CombinedLoader
from torch.utils.data import DataLoader, Dataset

from rsfm.band_stats import BandStats
from rsfm.data.collate import collate_samples
from rsfm.data.stats import compute_band_stats
from rsfm.data.synthetic.world import default_cache_root

log = logging.getLogger(__name__)

HASH_FILE_LIMIT = 64 * 2**20  # provenance hashes files up to this size (bigger: name only)
HASH_TOTAL_LIMIT = 512 * 2**20  # and stops hashing past this many bytes per dataset
_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256


def as_band_stats(value: BandStats | Mapping[str, Any]) -> BandStats:
    """A :class:`BandStats` from itself or its ``to_dict()`` form."""
    return value if isinstance(value, BandStats) else BandStats.from_dict(dict(value))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file (streamed; cached by path, size and modification time)."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(2**20), b""):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def dataset_record(
    name: str, files: Iterable[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Provenance of one dataset: ``{"name", "files", "sha256"}``.

    Files are named relative to ``root`` (else by file name), so no local folder leaks into a
    model card; files up to :data:`HASH_FILE_LIMIT` are hashed while the dataset's hashed bytes
    stay under :data:`HASH_TOTAL_LIMIT` (cheap on chips and the synthetic world).
    """
    names: list[str] = []
    hashes: dict[str, str] = {}
    hashed = 0
    for entry in dict.fromkeys(Path(f) for f in files):  # unique, in order
        label = entry.name
        if root is not None:
            try:
                label = entry.resolve().relative_to(Path(root).resolve()).as_posix()
            except ValueError:
                pass
        names.append(label)
        try:
            size = entry.stat().st_size
        except OSError:
            continue
        if size <= HASH_FILE_LIMIT and hashed + size <= HASH_TOTAL_LIMIT:
            hashes[label] = file_sha256(entry)
            hashed += size
    return {"name": name, "files": names, "sha256": hashes}


@dataclass
class DataFacts:
    """What a datamodule fed the model; a task records it as the stage it trained.

    Attributes:
        sensors: ``{sensor: [band names fed to the model]}`` (bad bands excluded).
        bad_bands: ``{sensor: [band names left out as bad]}``.
        class_names: Names of the label classes (index order), when there are labels.
        input_size: Training window side in pixels, when fixed.
        datasets: Provenance, ``[{"name", "files", "sha256": {file: hex}}]``.
    """

    sensors: dict[str, list[str]] = field(default_factory=dict)
    bad_bands: dict[str, list[str]] = field(default_factory=dict)
    class_names: list[str] | None = None
    input_size: int | None = None
    datasets: list[dict[str, Any]] = field(default_factory=list)


class BaseDataModule(pl.LightningDataModule):
    """Loaders and the band-statistics contract shared by every rsfm datamodule.

    Subclasses set ``train_dataset`` / ``val_dataset`` (and optionally ``test_dataset`` /
    ``predict_dataset``) in ``setup`` and keep :attr:`band_stats` up to date.

    Args:
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
    """

    #: Batch builder of every loader (per-sample wavelengths kept, georeferencing lists).
    collate_fn: Callable[[list[Any]], Any] | None = staticmethod(collate_samples)

    def __init__(self, batch_size: int = 16, num_workers: int = 0) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.band_stats: dict[str, BandStats] = {}
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self.predict_dataset: Dataset | None = None
        self._fed: list[tuple[str, Any]] = []  # (sensor key, raster dataset) built in setup

    # -- loaders ---------------------------------------------------------------------------------
    def _loader(self, dataset: Dataset, shuffle: bool, **kwargs: Any) -> DataLoader:
        """A DataLoader with the module's batch size, workers and collate function.

        Training loaders (``shuffle``) drop an incomplete last batch when there is more than one.
        """
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}: call setup() before asking for loaders")
        options: dict[str, Any] = {
            "batch_size": self.batch_size,
            "shuffle": shuffle,
            "num_workers": self.num_workers,
            "collate_fn": self.collate_fn,
            "persistent_workers": self.num_workers > 0,
            "drop_last": shuffle and len(dataset) > self.batch_size,  # type: ignore[arg-type]
        }
        options.update(kwargs)
        return DataLoader(dataset, **options)

    @staticmethod
    def _combine(loaders: dict[str, DataLoader], train: bool) -> Any:
        """One loader as is; several as a Lightning ``CombinedLoader`` (one step sees a batch of
        every loader: training cycles the shorter ones, evaluation yields None for exhausted
        ones), so a metric is logged once per step whichever loaders exist."""
        if len(loaders) == 1:
            return next(iter(loaders.values()))
        return CombinedLoader(loaders, mode="max_size_cycle" if train else "max_size")

    def train_dataloader(self) -> Any:
        """Shuffled training batches."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> Any:
        """Validation batches."""
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> Any:
        """Test batches (the validation data unless a ``test_dataset`` is set)."""
        dataset = self.test_dataset if self.test_dataset is not None else self.val_dataset
        return self._loader(dataset, shuffle=False)

    def predict_dataloader(self) -> Any:
        """Prediction batches (the test, else validation, data unless a ``predict_dataset``)."""
        dataset = next(
            (d for d in (self.predict_dataset, self.test_dataset) if d is not None),
            self.val_dataset,
        )
        return self._loader(dataset, shuffle=False)

    # -- band statistics ------------------------------------------------------------------------
    def use_band_stats(self, stats: Mapping[str, BandStats | Mapping[str, Any]]) -> dict[str, str]:
        """Normalise with statistics that came with a checkpoint or pretrained weights.

        The default replaces the statistics of every sensor named alike in ``stats`` and hands
        them to the built datasets (:meth:`_apply_band_stats`).

        Args:
            stats: ``{name: BandStats or its dict}``.

        Returns:
            ``{own sensor: name of the entry of stats now used}``.
        """
        used = {key: key for key in self.band_stats if key in stats}
        if not used:
            return {}
        self.band_stats = {
            key: as_band_stats(stats[key]) if key in used else value
            for key, value in self.band_stats.items()
        }
        self._apply_band_stats()
        return used

    def _cached_band_stats(
        self,
        key: str,
        train_files: list[Path],
        bands: list[str] | None,
        raw: Callable[[], Dataset],
        folder: Path | None = None,
    ) -> BandStats:
        """Statistics of ``key``: known, cached, or computed from training windows and cached.

        Args:
            key: Sensor (or file stem) the statistics are stored under.
            train_files: Training images (they key the cache entry).
            bands: Band subset read (it keys the cache entry too).
            raw: Builds the un-normalised dataset the statistics are computed on.
            folder: Store ``band_stats_<key>.json`` here (the synthetic world, shared by every
                datamodule); None: a cache entry keyed by the files, never in users' folders.
        """
        if key in self.band_stats:
            return self.band_stats[key]
        if folder is not None:
            path = folder / f"band_stats_{key}.json"
        else:
            files = json.dumps([[str(f.resolve()) for f in train_files], bands])
            digest = hashlib.sha256(files.encode()).hexdigest()[:16]
            path = default_cache_root().parent / "band_stats" / f"{key}-{digest}.json"
        if path.exists():
            stats = BandStats.load(path)
        else:  # reproducible: seeded, whatever ran before
            stats = compute_band_stats(
                raw(), n_samples=self.stats_samples, patch_size=self.patch_size, seed=self.seed
            )
            try:
                stats.save(path)
            except OSError as err:  # read-only location: keep the statistics in memory
                log.warning("could not save band statistics to %s: %s", path, err)
        self.band_stats[key] = stats
        return stats

    def _feed(self, key: str, dataset: Any) -> Any:
        """Remember a raster dataset built for the model (``key``: its statistics' sensor)."""
        self._fed.append((key, dataset))
        return dataset

    def _apply_band_stats(self) -> None:
        """Normalise every dataset of :meth:`_feed` with the (imposed) statistics of its sensor."""
        if getattr(self, "normalize", True):
            for key, dataset in self._fed:
                dataset.normalization = self.band_stats.get(key, dataset.normalization)

    def _raster_facts(self, name: str, root: str | os.PathLike[str] | None = None) -> DataFacts:
        """Facts of the datasets of :meth:`_feed`: their sensors, bands and files (and labels)."""
        keys = {id(d): k for k, d in self._fed}
        files = [f for _, d in self._fed for f in (*d._files, *d.label_files)]
        return DataFacts(
            sensors=sensor_facts((d for _, d in self._fed), lambda d: keys[id(d)]),
            class_names=_class_names(self),
            input_size=getattr(self, "patch_size", None),
            datasets=[dataset_record(name, files, root)] if files else [],
        )

    def data_facts(self) -> DataFacts:
        """What the model is fed (after ``setup``).

        The default names every sensor the statistics cover with their band names; subclasses
        that read files know more (the bands fed, bad bands, classes, provenance).
        """
        return DataFacts(
            sensors={key: list(stats.band_names) for key, stats in self.band_stats.items()},
            class_names=_class_names(self),
            input_size=getattr(self, "patch_size", None),
        )


def _class_names(datamodule: Any) -> list[str] | None:
    names = getattr(datamodule, "class_names", None)
    return list(names) if names else None


def sensor_facts(datasets: Iterable[Any], key: Callable[[Any], str]) -> dict[str, list[str]]:
    """``{key(dataset): band names}`` of ``SensorRasterDataset`` s (first one per key wins)."""
    sensors: dict[str, list[str]] = {}
    for dataset in datasets:
        sensors.setdefault(key(dataset), list(dataset.sensor.band_names))
    return sensors

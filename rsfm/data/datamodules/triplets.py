"""Triplet windows (low-res image, reference, high-res target) for reference-guided SR."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import DataLoader, Dataset

from rsfm.band_stats import BandStats
from rsfm.data.datamodules.base import BaseDataModule, DataFacts, as_band_stats, dataset_record
from rsfm.data.triplet_coregistration import (
    CoRegisteredTriplet,
    TripletFiles,
)
from rsfm.data.triplets import ReferenceDegradation, TripletDataset, stats_from_windows


class TripletDataModule(BaseDataModule):
    """Triplet windows for ``RefSRTask`` (the synthetic world's triplets by default).

    Args:
        triplets: Explicit triplets ``[{"lr", "reference", "hr", "changed"}, ...]``; None uses
            the synthetic world (``synthetic`` = :class:`SyntheticTripletConfig` arguments).
        root: Folder of synthetic triplets (default: the cache).
        synthetic: Arguments of :class:`~rsfm.data.synthetic.triplets.SyntheticTripletConfig`.
        val_triplets: Triplets held out for validation (the last ones).
        patch_size: Training window side in HR pixels.
        batch_size: Windows per batch.
        train_length: Random training windows per epoch.
        num_workers: DataLoader workers.
        p_missing: Missing-reference probability (training).
        p_target: Target-as-reference probability (training).
        p_grey: Grey-reference probability (training).
        p_jitter: Colour-jitter probability (training).
        seed: Seed of windows and degradations.
    """

    def __init__(
        self,
        triplets: list[dict[str, str]] | None = None,
        root: str | None = None,
        synthetic: dict[str, Any] | None = None,
        val_triplets: int = 1,
        patch_size: int = 32,
        batch_size: int = 8,
        train_length: int = 256,
        num_workers: int = 0,
        p_missing: float = 0.1,
        p_target: float = 0.1,
        p_grey: float = 0.05,
        p_jitter: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        self.save_hyperparameters()
        self.train_dataset: TripletDataset | None = None
        self.val_dataset: TripletDataset | None = None

    def triplet_files(self) -> list[TripletFiles]:
        """The triplets' paths (generating the synthetic ones when none are given)."""
        if self.hparams.triplets:
            return [TripletFiles.from_dict(t) for t in self.hparams.triplets]
        from rsfm.data.synthetic.triplets import (
            SyntheticTripletConfig,
            ensure_synthetic_triplets,
            triplet_files,
        )

        config = SyntheticTripletConfig(**(self.hparams.synthetic or {}))
        folder = ensure_synthetic_triplets(self.hparams.root, config)
        return [TripletFiles(**files) for files in triplet_files(folder)]

    def use_band_stats(self, stats: Mapping[str, BandStats | Mapping[str, Any]]) -> dict[str, str]:
        """Normalise with given statistics (``{"lr": ..., "reference": ...}``) instead.

        Works before or after :meth:`setup` (built datasets take the new statistics).

        Returns:
            ``{role: role}`` of the statistics now used.
        """
        given = {k: as_band_stats(v) for k, v in stats.items() if k in ("lr", "reference")}
        if not given:
            return {}
        self.band_stats = {**self.band_stats, **given}
        self._apply_band_stats()
        return {k: k for k in given}

    def _apply_band_stats(self) -> None:
        lr_stats, ref_stats = self.band_stats.get("lr"), self.band_stats.get("reference")
        for dataset in (self.train_dataset, self.val_dataset):
            if dataset is not None:
                dataset.lr_stats, dataset.ref_stats = lr_stats, ref_stats

    def data_facts(self) -> DataFacts:
        """Bands of the low-resolution input and the reference, and the triplet files read."""
        facts = super().data_facts()
        opened = [t for d in (self.train_dataset, self.val_dataset) if d for t in d.triplets]
        files = [
            path
            for triplet in opened
            for path in (triplet.files.lr, triplet.files.reference, triplet.files.hr)
            if path is not None
        ]
        name = "triplets" if self.hparams.triplets else "rsfm-synthetic-triplets"
        root = files[0].parent.parent if files else None
        facts.datasets = [dataset_record(name, files, root)]
        facts.input_size = self.hparams.patch_size
        return facts

    def setup(self, stage: str | None = None) -> None:
        """Open the triplets, split off validation ones, compute the band statistics."""
        if self.train_dataset is not None:
            return
        hp = self.hparams
        triplets = [CoRegisteredTriplet(files) for files in self.triplet_files()]
        n_val = min(hp.val_triplets, len(triplets) - 1) if len(triplets) > 1 else 0
        train, val = (
            triplets[: len(triplets) - n_val],
            triplets[len(triplets) - n_val :] or triplets,
        )
        degradation = ReferenceDegradation(hp.p_missing, hp.p_target, hp.p_grey, hp.p_jitter)
        self.train_dataset = TripletDataset(
            train, hp.patch_size, hp.train_length, degradation=degradation, seed=hp.seed
        )
        if not self.band_stats:
            self.band_stats = {"lr": stats_from_windows(self.train_dataset, "lr")}
            if train[0].files.reference is not None:
                self.band_stats["reference"] = stats_from_windows(self.train_dataset, "reference")
        lr_stats, ref_stats = self.band_stats.get("lr"), self.band_stats.get("reference")
        self.train_dataset.lr_stats, self.train_dataset.ref_stats = lr_stats, ref_stats
        self.val_dataset = TripletDataset(
            val, hp.patch_size, None, lr_stats=lr_stats, ref_stats=ref_stats, seed=hp.seed
        )

    def _loader(self, dataset: Dataset, shuffle: bool, **kwargs: Any) -> DataLoader:
        """Every batch kept, the last incomplete one included."""
        return super()._loader(dataset, shuffle, **{"drop_last": False, **kwargs})

    def train_dataloader(self) -> DataLoader:
        """Random degraded windows of the training triplets."""
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """A grid of clean windows of the validation triplets."""
        return self._loader(self.val_dataset, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Same as validation."""
        return self.val_dataloader()

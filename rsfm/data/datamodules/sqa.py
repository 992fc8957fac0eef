"""The SQA datamodule: train / held-out splits of an SQA dataset folder, split by image."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset

from rsfm.band_stats import BandStats
from rsfm.data.sqa_records import INFO_NAME, SQADataset, read_manifest, split_image_ids


# ----------------------------------------------------------------------------- datamodule
class SQADataModule(pl.LightningDataModule):
    """Train / held-out splits of an existing SQA dataset folder (split by image).

    The folder is written by :func:`rsfm.curation.sqa_builder.build_sqa_dataset`; to build it
    inside a run, use :class:`rsfm.curation.sqa_builder.SQABuildingDataModule` (same arguments
    plus the segmenters and images to assess).

    Args:
        root: Dataset folder.
        target: Regressed accuracy, ``oa`` or ``miou``.
        feature_keys: Segmenter features fed to the model (``prediction``: output statistics,
            comparable across architectures; ``encoder``: pooled encoder features).
        val_fraction: Share of files (or of windows, for a single file) held out.
        batch_size: Records per batch.
        num_workers: DataLoader workers.
        seed: Seed of the split.
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
    ) -> None:
        super().__init__()
        self.root = Path(root)
        self.target = target
        self.feature_keys = list(feature_keys or ["prediction"])
        self.val_fraction = val_fraction
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_dataset: SQADataset | None = None
        self.val_dataset: SQADataset | None = None

    def prepare_data(self) -> None:
        """Check that the dataset folder exists (this datamodule never builds one)."""
        if not (self.root / INFO_NAME).exists():
            raise FileNotFoundError(
                f"{self.root} holds no SQA dataset ({INFO_NAME} missing); build it with "
                "rsfm.curation.sqa_builder.build_sqa_dataset, or use the datamodule "
                "rsfm.curation.sqa_builder.SQABuildingDataModule to build it in the run"
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

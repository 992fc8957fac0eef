"""The SQA datamodule: train / held-out splits of an SQA dataset folder, split by image."""

from __future__ import annotations

from pathlib import Path

from rsfm.data.datamodules.base import BaseDataModule, DataFacts, dataset_record
from rsfm.data.sqa_records import (
    INFO_NAME,
    MANIFEST_NAME,
    SQADataset,
    read_manifest,
    split_image_ids,
)


# ----------------------------------------------------------------------------- datamodule
class SQADataModule(BaseDataModule):
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

    collate_fn = None  # records are plain tensors: torch's default collate

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
        super().__init__(batch_size, num_workers)
        self.root = Path(root)
        self.target = target
        self.feature_keys = list(feature_keys or ["prediction"])
        self.val_fraction = val_fraction
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
        stats = self.train_dataset.band_stats
        self.band_stats = {stats.sensor or "default": stats} if stats is not None else {}

    @property
    def feature_dim(self) -> int:
        """Segmenter feature size F (after :meth:`setup`)."""
        if self.train_dataset is None:
            self.setup("fit")
        return self.train_dataset.feature_dim

    def data_facts(self) -> DataFacts:
        """The image sensor and bands of the statistics, and the dataset's manifest files."""
        facts = super().data_facts()
        files = [self.root / name for name in (INFO_NAME, MANIFEST_NAME)]
        facts.datasets = [dataset_record(self.root.name, files, self.root)]
        return facts

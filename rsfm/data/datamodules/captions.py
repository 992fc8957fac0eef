"""Train/val loaders over a caption manifest or the synthetic captioned world."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader

from rsfm.band_stats import BandStats
from rsfm.data.caption_filters import CaptionFilter
from rsfm.data.captions import CaptionDataset, read_caption_manifest, split_records
from rsfm.data.datamodules.base import BaseDataModule, DataFacts, as_band_stats, dataset_record


class CaptionDataModule(BaseDataModule):
    """Train/val loaders over a caption manifest (or the synthetic captioned world).

    Batches are :func:`collate_samples` dicts: ``image`` [B,C,H,W], ``gsd`` [B] (NaN =
    unknown), ``caption`` list[str], ``label`` list[str] when present.

    Args:
        manifest: Caption manifest; None with ``synthetic=True``.
        synthetic: Build (or reuse) the synthetic captioned world as the manifest.
        synthetic_args: Keyword arguments of
            :func:`rsfm.data.synthetic.captions.ensure_caption_world`.
        batch_size: Samples per batch.
        size: Output side in pixels (None: images as stored; they must share a size).
        val_fraction: Fraction of images held out for validation.
        num_workers: DataLoader workers.
        bands: Bands to keep (names or indices).
        caption_sampling: ``random``, ``first`` or ``all`` for training (validation: ``first``).
        min_words: Caption filter: fewest words.
        max_words: Caption filter: most words.
        dedupe: Caption filter: drop duplicates.
        languages: Caption filter: allowed languages (None: no language filter).
        sensor: Registered sensor of GeoTIFFs (default: file metadata).
        band_stats: ``BandStats.to_dict()`` content normalising GeoTIFF pixels of both splits
            (exposed as ``self.band_stats = {sensor: BandStats}`` for checkpoints and cards).
        seed: Split and sampling seed.
    """

    def __init__(
        self,
        manifest: str | None = None,
        synthetic: bool = False,
        synthetic_args: dict[str, Any] | None = None,
        batch_size: int = 16,
        size: int | None = None,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        bands: list[str] | None = None,
        caption_sampling: str = "random",
        min_words: int = 3,
        max_words: int = 77,
        dedupe: bool = True,
        languages: tuple[str, ...] | None = ("en",),
        sensor: str | None = None,
        band_stats: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        if (manifest is None) == (not synthetic):
            raise ValueError("give exactly one of `manifest` or `synthetic=True`")
        super().__init__(batch_size, num_workers)
        self.manifest, self.synthetic = manifest, synthetic
        self.synthetic_args = dict(synthetic_args or {})
        self.size = size
        self.val_fraction, self.bands, self.sensor, self.seed = val_fraction, bands, sensor, seed
        self.caption_sampling = caption_sampling
        self.filter = CaptionFilter(
            min_words, max_words, dedupe, None if languages is None else tuple(languages)
        )
        self.train_dataset: CaptionDataset | None = None
        self.val_dataset: CaptionDataset | None = None
        self.dropped: dict[str, int] = {}
        self.given_band_stats = BandStats.from_dict(band_stats) if band_stats else None
        if self.given_band_stats is not None:
            self.band_stats = {self.given_band_stats.sensor or "unknown": self.given_band_stats}

    def manifest_path(self) -> Path:
        """The manifest in use (building the synthetic captioned world if asked)."""
        if self.manifest is not None:
            return Path(self.manifest)
        from rsfm.data.synthetic.captions import ensure_caption_world

        return ensure_caption_world(**self.synthetic_args) / "captions.jsonl"

    def prepare_data(self) -> None:
        """Build the synthetic captioned world once (rank 0)."""
        if self.synthetic:
            self.manifest_path()

    def setup(self, stage: str | None = None) -> None:
        """Read, clean and split the manifest."""
        if self.train_dataset is not None:
            return
        records, self.dropped = self.filter(read_caption_manifest(self.manifest_path()))
        train, val = split_records(records, self.val_fraction, self.seed)
        common = {
            "bands": self.bands,
            "size": self.size,
            "sensor": self.sensor,
            "band_stats": self.given_band_stats,
        }
        self.train_dataset = CaptionDataset(
            train, caption_sampling=self.caption_sampling, seed=self.seed, **common
        )
        self.val_dataset = CaptionDataset(val, caption_sampling="first", **common) if val else None

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        self.setup("fit")
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches (empty when ``val_fraction`` is 0)."""
        self.setup("validate")
        return self._loader(self.val_dataset, shuffle=False) if self.val_dataset else []

    def test_dataloader(self) -> DataLoader | list:
        """Same as validation."""
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader | list:
        """Same as validation."""
        return self.val_dataloader()

    # -- band statistics contract ------------------------------------------------------------
    def use_band_stats(self, stats: Mapping[str, BandStats | Mapping[str, Any]]) -> dict[str, str]:
        """Normalise GeoTIFF pixels with given statistics: this sensor's entry, else the first.

        Returns:
            ``{sensor: name of the entry used}``; empty when ``stats`` is empty.
        """
        if not stats:
            return {}
        name = self.sensor if self.sensor in stats else next(iter(stats))
        self.given_band_stats = as_band_stats(stats[name])
        key = self.given_band_stats.sensor or name
        self.band_stats = {key: self.given_band_stats}
        self._apply_band_stats()
        return {key: name}

    def _apply_band_stats(self) -> None:
        for dataset in (self.train_dataset, self.val_dataset):
            if dataset is not None:
                dataset.band_stats = self.given_band_stats

    def data_facts(self) -> DataFacts:
        """The sensor and bands of the statistics, the class labels, and the manifest read.

        The manifest's hash pins the image list; images are not hashed one by one.
        """
        facts = super().data_facts()
        manifest = self.manifest_path()
        facts.datasets = [dataset_record(manifest.parent.name, [manifest], manifest.parent)]
        facts.input_size = self.size
        labels = sorted({r.label for r in getattr(self.train_dataset, "records", []) if r.label})
        facts.class_names = labels or None
        return facts

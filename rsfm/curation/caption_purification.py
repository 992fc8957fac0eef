"""CLIP-RS caption purification: score image-caption pairs with a first CLIP, drop or rewrite.

The recipe of CLIP-RS (Li et al. 2025): train a first CLIP on a trusted, high-quality subset,
score every (image, caption) pair of the noisy remainder by the cosine similarity of their
embeddings, and drop pairs under a threshold, or hand them to a rewriting hook (an MLLM, a
template, a human queue). The threshold is absolute (cosine) or a quantile of the untrusted
pairs' scores. Trusted rows are never dropped.

``purify_manifest`` does all of it for a manifest and writes the purified manifest (JSONL) and
a JSON report with counts, the resolved threshold and every dropped or rewritten pair.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rsfm.band_stats import BandStats
from rsfm.data.captions import (
    RASTER_SUFFIXES,
    CaptionDataset,
    CaptionRecord,
    read_caption_image,
    read_caption_manifest,
    write_caption_manifest,
)
from rsfm.data.collate import collate_samples
from rsfm.data.datamodules.captions import CaptionDataModule

# A rewrite hook gets the pair (a record holding only that caption) and its score; it returns a
# replacement caption, or None to drop the pair.
RewriteHook = Callable[[CaptionRecord, float], str | None]


@dataclass
class PurificationResult:
    """Outcome of :func:`purify_records`.

    Attributes:
        records: Purified records (surviving and rewritten captions; empty records removed).
        scores: Cosine score of every input pair, per input record, in caption order.
        threshold: The cosine threshold applied.
        report: Counts and the dropped / rewritten pairs (JSON-ready).
        model: The scoring model (the first model, when :func:`purify_manifest` trained it).
    """

    records: list[CaptionRecord]
    scores: list[list[float]]
    threshold: float
    report: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None


def caption_band_stats(
    records: Sequence[CaptionRecord],
    bands: Sequence[str | int] | None = None,
    sensor: str | None = None,
    max_images: int = 256,
    percentiles: tuple[float, float] = (1.0, 99.0),
    seed: int = 0,
) -> BandStats | None:
    """Per-band statistics of a manifest's GeoTIFFs (most common sensor), or None for pictures.

    Hand-written rather than :func:`compute_band_stats`: that one samples a georeferenced
    dataset, while manifest images are independent files (possibly without a CRS).
    """
    rasters = [r for r in records if r.image.suffix.lower() in RASTER_SUFFIXES]
    if not rasters:
        return None
    order = np.random.default_rng(seed).permutation(len(rasters))[:max_images]
    by_sensor: dict[str, list[np.ndarray]] = {}
    meta: dict[str, tuple[list[str], list[float]]] = {}
    for i in order:
        pixels = read_caption_image(rasters[i].image, sensor)
        names = pixels.sensor.band_names
        keep = list(range(len(names)))
        if bands is not None:
            upper = [n.upper() for n in names]
            keep = [b if isinstance(b, int) else upper.index(b.upper()) for b in bands]
        values = pixels.image[keep][:, pixels.valid]
        by_sensor.setdefault(pixels.sensor.name, []).append(values.astype(np.float64))
        meta[pixels.sensor.name] = (
            [names[k] for k in keep],
            [float(pixels.sensor.wavelengths[k]) for k in keep],
        )
    name = max(by_sensor, key=lambda s: len(by_sensor[s]))
    values = np.concatenate(by_sensor[name], axis=1)
    if values.shape[1] == 0:
        raise ValueError(f"no valid pixels in the {name} images of the manifest")
    low, high = np.percentile(values, percentiles, axis=1)
    clipped = np.clip(values, low[:, None], high[:, None])
    band_names, wavelengths = meta[name]
    return BandStats(
        band_names=band_names,
        wavelengths=wavelengths,
        low=low.tolist(),
        high=high.tolist(),
        mean=clipped.mean(axis=1).tolist(),
        std=clipped.std(axis=1).tolist(),
        percentiles=percentiles,
        sensor=name,
        n_pixels=int(values.shape[1]),
    )


def _dataset(
    records: Sequence[CaptionRecord],
    model: nn.Module,
    caption_sampling: str,
    bands: Sequence[str | int] | None,
    size: int | None,
    sensor: str | None,
    band_stats: BandStats | None,
    seed: int = 0,
) -> CaptionDataset:
    side = size if size is not None else getattr(model, "image_size", None)
    return CaptionDataset(
        list(records),
        bands=bands,
        size=side,
        caption_sampling=caption_sampling,
        sensor=sensor,
        band_stats=band_stats,
        seed=seed,
    )


class NormalizedCaptionDataModule(CaptionDataModule):
    """:class:`CaptionDataModule` whose GeoTIFF pixels are normalised per band.

    The statistics are computed from the training images (:func:`caption_band_stats`) or
    given, and exposed as ``band_stats`` (``{sensor: BandStats}``) so tasks store them in
    checkpoints and hub cards. (Stop-gap until ``CaptionDataModule`` takes ``band_stats``.)

    Args:
        band_stats: ``BandStats.to_dict()`` content, or None to compute it from the training
            images.
        stats_images: Training images sampled for the statistics.
        **kwargs: :class:`CaptionDataModule` arguments.
    """

    def __init__(
        self,
        band_stats: dict[str, Any] | None = None,
        stats_images: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.given_stats = BandStats.from_dict(band_stats) if band_stats else None
        self.stats_images = stats_images
        self.band_stats: dict[str, BandStats] = {}

    def use_band_stats(self, stats: dict[str, dict[str, Any]]) -> None:
        """Use pretrained statistics (the first entry) instead of computing them."""
        self.given_stats = BandStats.from_dict(next(iter(stats.values())))

    def setup(self, stage: str | None = None) -> None:
        """Read, clean and split the manifest, then attach the statistics to both splits."""
        super().setup(stage)
        if self.band_stats:
            return
        stats = self.given_stats or caption_band_stats(
            self.train_dataset.records, self.bands, self.sensor, self.stats_images, seed=self.seed
        )
        if stats is None:  # pictures only: nothing to normalise
            return
        for dataset in (self.train_dataset, self.val_dataset):
            if dataset is not None:
                dataset.band_stats = stats
        self.band_stats = {stats.sensor or "unknown": stats}


class _InMemoryImages(Dataset):
    """Decoded images of a ``CaptionDataset`` kept in memory, a random caption per access."""

    def __init__(self, images: CaptionDataset, seed: int = 0) -> None:
        self.images = [images[i] for i in range(len(images))]
        self.captions = [record.captions for record in images.records]
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Any]:
        captions = self.captions[index]
        return {**self.images[index], "caption": captions[self.rng.integers(len(captions))]}


@torch.no_grad()
def score_pairs(
    model: nn.Module,
    records: Sequence[CaptionRecord],
    *,
    bands: Sequence[str | int] | None = None,
    size: int | None = None,
    sensor: str | None = None,
    band_stats: BandStats | None = None,
    batch_size: int = 64,
) -> list[list[float]]:
    """Image-caption cosine similarity of every pair, per record in caption order.

    Args:
        model: An :class:`~rsfm.models.clip.RSCLIP` (``encode_image`` / ``encode_text``).
        records: Caption records.
        bands: Bands to feed (names or indices); None = all.
        size: Image side fed to the model (default: the model's ``image_size``).
        sensor: Registered sensor of the GeoTIFFs (default: file metadata).
        band_stats: Normalisation of GeoTIFF pixels (as in training).
        batch_size: Images / captions per forward pass.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dataset = _dataset(records, model, "first", bands, size, sensor, band_stats)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
    images = []
    for batch in loader:
        waves = batch["wavelengths"].to(device)
        images.append(model.encode_image(batch["image"].to(device), waves, normalize=True))
    image_features = torch.cat(images)  # [R, E], one per record
    captions = [c for record in records for c in record.captions]
    owner = torch.tensor([r for r, record in enumerate(records) for _ in record.captions])
    texts = [
        model.encode_text(captions[i : i + batch_size], normalize=True)
        for i in range(0, len(captions), batch_size)
    ]
    similarity = (torch.cat(texts) * image_features[owner.to(device)]).sum(dim=1).cpu()
    model.train(was_training)
    scores, start = [], 0
    for record in records:
        scores.append(similarity[start : start + len(record.captions)].tolist())
        start += len(record.captions)
    return scores


def resolve_threshold(
    scores: Sequence[float], threshold: float | None, quantile: float | None
) -> float:
    """The cosine threshold: ``threshold`` itself, or the ``quantile`` of the scores.

    Raises:
        ValueError: Unless exactly one of them is given, or for a quantile outside [0, 1].
    """
    if (threshold is None) == (quantile is None):
        raise ValueError("give exactly one of `threshold` (cosine) or `quantile`")
    if threshold is not None:
        return float(threshold)
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    if not scores:
        return -math.inf
    return float(np.quantile(np.asarray(scores, dtype=np.float64), quantile))


def purify_records(
    records: Sequence[CaptionRecord],
    model: nn.Module,
    *,
    threshold: float | None = None,
    quantile: float | None = None,
    rewrite: RewriteHook | None = None,
    bands: Sequence[str | int] | None = None,
    size: int | None = None,
    sensor: str | None = None,
    band_stats: BandStats | None = None,
    batch_size: int = 64,
) -> PurificationResult:
    """Score every pair and drop (or rewrite) the untrusted ones under the threshold.

    Args:
        records: Caption records; ``trusted`` ones are kept as they are.
        model: The first CLIP (trained on the trusted subset).
        threshold: Absolute cosine threshold (pairs strictly below it fail).
        quantile: Or: fail the lowest fraction of the untrusted pairs' scores (0.3 = 30 %).
        rewrite: Hook called for each failing pair (see :data:`RewriteHook`); None = drop.
        bands: Bands fed to the model.
        size: Image side fed to the model (default: its ``image_size``).
        sensor: Registered sensor of the GeoTIFFs.
        band_stats: Normalisation of GeoTIFF pixels.
        batch_size: Pairs per forward pass.
    """
    scores = score_pairs(
        model,
        records,
        bands=bands,
        size=size,
        sensor=sensor,
        band_stats=band_stats,
        batch_size=batch_size,
    )
    untrusted = [
        s for record, row in zip(records, scores, strict=True) if not record.trusted for s in row
    ]
    cutoff = resolve_threshold(untrusted, threshold, quantile)
    kept_records: list[CaptionRecord] = []
    dropped, rewritten = [], []
    counts: Counter[str] = Counter()
    for record, row in zip(records, scores, strict=True):
        counts["pairs_in"] += len(record.captions)
        if record.trusted:
            counts["trusted_pairs"] += len(record.captions)
            kept_records.append(record)
            continue
        captions = []
        for caption, score in zip(record.captions, row, strict=True):
            if score >= cutoff:
                captions.append(caption)
                continue
            new = rewrite(replace(record, captions=(caption,)), score) if rewrite else None
            entry = {"row": record.row, "image": str(record.image), "caption": caption}
            entry["score"] = round(float(score), 6)
            if new:
                captions.append(new)
                rewritten.append({**entry, "rewrite": new})
            else:
                dropped.append(entry)
        if captions:
            kept_records.append(replace(record, captions=tuple(captions)))
        else:
            counts["records_dropped"] += 1
    flat = [s for row in scores for s in row]
    report = {
        "records_in": len(records),
        "records_out": len(kept_records),
        "records_dropped": counts["records_dropped"],
        "pairs_in": counts["pairs_in"],
        "trusted_pairs": counts["trusted_pairs"],
        "pairs_scored_untrusted": len(untrusted),
        "pairs_dropped": len(dropped),
        "pairs_rewritten": len(rewritten),
        "pairs_out": sum(len(r.captions) for r in kept_records),
        "threshold": cutoff,
        "threshold_mode": "absolute" if threshold is not None else "quantile",
        "quantile": quantile,
        "score_mean": float(np.mean(flat)) if flat else None,
        "score_std": float(np.std(flat)) if flat else None,
        "dropped": dropped,
        "rewritten": rewritten,
    }
    return PurificationResult(kept_records, scores, cutoff, report, model)


def train_first_model(
    records: Sequence[CaptionRecord],
    model: str = "clip_rs_tiny",
    model_args: dict[str, Any] | None = None,
    *,
    max_steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-3,
    loss: str = "clip",
    bands: Sequence[str | int] | None = None,
    size: int | None = None,
    sensor: str | None = None,
    band_stats: BandStats | None = None,
    seed: int = 0,
    accelerator: str = "auto",
    in_memory: bool = False,
    task_args: dict[str, Any] | None = None,
) -> nn.Module:
    """Train the first CLIP on (trusted) records with :class:`~rsfm.tasks.clip.CLIPTask`.

    Each epoch shows every image once with one of its captions, drawn at random (several
    captions of one image in a batch would be each other's false negatives). ``in_memory``
    decodes each image once and keeps it (small trusted subsets). Returns the trained model in
    eval mode. ``task_args`` are further :class:`~rsfm.tasks.clip.CLIPTask` arguments.
    """
    import lightning.pytorch as pl  # lazy: rsfm.data modules stay cheap to import

    from rsfm.tasks.clip import CLIPTask

    if not records:
        raise ValueError("no records to train the first CLIP on (mark trusted rows)")
    pl.seed_everything(seed, verbose=False)
    options = {"lr": lr, "warmup_epochs": 0.0, **(task_args or {})}
    task = CLIPTask(model=model, model_args=model_args, loss=loss, **options)
    task.export_dir = ""
    task.band_stats = {band_stats.sensor: band_stats.to_dict()} if band_stats else None
    dataset: Dataset = _dataset(
        records, task.model, "random", bands, size, sensor, band_stats, seed
    )
    if in_memory:
        dataset = _InMemoryImages(dataset, seed)
    loader = DataLoader(
        dataset,
        batch_size=min(batch_size, len(dataset)),
        shuffle=True,
        drop_last=len(dataset) > batch_size,
        collate_fn=collate_samples,
        generator=torch.Generator().manual_seed(seed),
    )
    trainer = pl.Trainer(
        max_steps=max_steps,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(task, train_dataloaders=loader)
    return task.model.eval()


def purify_manifest(
    manifest: str | Path,
    output: str | Path,
    *,
    model: nn.Module | None = None,
    threshold: float | None = None,
    quantile: float | None = None,
    rewrite: RewriteHook | None = None,
    report_path: str | Path | None = None,
    first_model: str = "clip_rs_tiny",
    first_model_args: dict[str, Any] | None = None,
    max_steps: int = 300,
    bands: Sequence[str | int] | None = None,
    size: int | None = None,
    sensor: str | None = None,
    band_stats: BandStats | None = None,
    seed: int = 0,
    in_memory: bool = False,
) -> PurificationResult:
    """Purify a caption manifest end to end (CLIP-RS): first model, scores, drop / rewrite.

    Args:
        manifest: Input manifest (``trusted`` column marks the trusted subset).
        output: Purified manifest (JSONL) to write.
        model: A trained CLIP to score with; None = train ``first_model`` on the trusted rows.
        threshold: Absolute cosine threshold (or ``quantile``).
        quantile: Fraction of untrusted pairs to fail.
        rewrite: Hook for failing pairs (None: drop them).
        report_path: JSON report (default: ``<output stem>.report.json`` beside ``output``).
        first_model: Registered CLIP variant of the first model.
        first_model_args: Its init-arg overrides.
        max_steps: Training steps of the first model.
        bands: Bands fed to the model.
        size: Image side fed to the model.
        sensor: Registered sensor of the GeoTIFFs.
        band_stats: GeoTIFF normalisation; None = computed from the trusted rows' images.
        seed: Training seed.
        in_memory: Keep the trusted images decoded in memory while training the first model.
    """
    records = read_caption_manifest(manifest)
    trusted = [r for r in records if r.trusted]
    if band_stats is None:
        band_stats = caption_band_stats(trusted or records, bands=bands, sensor=sensor)
    if model is None:
        model = train_first_model(
            trusted,
            first_model,
            first_model_args,
            max_steps=max_steps,
            bands=bands,
            size=size,
            sensor=sensor,
            band_stats=band_stats,
            seed=seed,
            in_memory=in_memory,
        )
    result = purify_records(
        records,
        model,
        threshold=threshold,
        quantile=quantile,
        rewrite=rewrite,
        bands=bands,
        size=size,
        sensor=sensor,
        band_stats=band_stats,
    )
    output = Path(output)
    write_caption_manifest(result.records, output)
    report = {"manifest": str(manifest), "output": str(output), **result.report}
    report["trusted_records"] = len(trusted)
    report["band_stats"] = band_stats.to_dict() if band_stats is not None else None
    path = Path(report_path) if report_path else output.with_name(f"{output.stem}.report.json")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)  # atomic, like the manifest
    result.report = report
    return result

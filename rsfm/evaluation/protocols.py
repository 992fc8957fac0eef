"""Encoder evaluation protocols on catalogue datasets: frozen features -> k-NN / linear probe,
and trained heads (frozen encoder + UPerNet / pooled head, or fine-tuning; :mod:`.heads`).

An *encoder spec* names what is evaluated:

- ``NAME@VERSION`` (or a hub entry folder): a pushed model's encoder;
- ``random:NAME@VERSION`` or ``random:REGISTERED_NAME``: the same architecture, randomly
  initialised with the run's seed (the floor a pretrained encoder must clear);
- ``raw``: no encoder: per-pixel normalised spectra (segmentation) or per-band mean and std of
  the normalised patch (classification) -- the raw-spectra baseline;
- ``ndwi``: no training: water where NDWI = (green - NIR) / (green + NIR) > 0 (water datasets);
- ``mf``: the matched filter, the classic spectral target detector, one per class on the raw
  per-pixel spectra (segmentation datasets; :func:`~rsfm.evaluation.probes.matched_filter_scores`).

Every dataset is normalised with per-sensor statistics of its own training split (the same for
every encoder), probes are fitted on the train split and scored on the test split; the
validation split is not used (no model selection happens). Pretrained and raw features do not
depend on the seed; the seed draws the training pixels, the probe initialisation and the random
encoder's weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rsfm.data.catalogue import ChipDataset, DatasetInfo, load_dataset
from rsfm.data.catalogue.base import normalise_sample
from rsfm.evaluation.command import BASELINES
from rsfm.evaluation.heads import (
    HEAD_PROTOCOLS,
    HeadRecipe,
    head_model,
    predict_split,
    train_head,
)
from rsfm.evaluation.probes import (
    IGNORE_INDEX,
    accuracy,
    fit_linear_probe,
    iou_per_class,
    knn_scores,
    matched_filter_scores,
    mean_average_precision,
    mean_iou,
    predict_linear,
)

PROTOCOLS = ("knn", "linear", "frozen_head", "finetune", "predict")
MAX_TRAIN_PIXELS = 20_000
MAX_TEST_PIXELS = 200_000
NDWI_GREEN_NM, NDWI_NIR_NM = 560.0, 840.0


@dataclass
class EncoderSpec:
    """One thing to evaluate (see the module docstring)."""

    text: str

    @property
    def kind(self) -> str:
        """``raw``, ``ndwi``, ``mf``, ``random`` or ``hub``."""
        if self.text in BASELINES:
            return self.text
        return "random" if self.text.startswith("random:") else "hub"

    @property
    def ref(self) -> str:
        """The model reference without the ``random:`` prefix."""
        return self.text.removeprefix("random:")


@dataclass
class Result:
    """Scores of one (encoder, dataset, protocol, seed)."""

    encoder: str
    dataset: str
    protocol: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)


class FrozenEncoder:
    """A spectrum-aware encoder in eval mode, giving pooled or dense features."""

    def __init__(self, spec: EncoderSpec, seed: int, hub: str | None = None) -> None:
        from rsfm.hub import load
        from rsfm.models.registry import create_model, is_model, model_config

        if spec.kind == "random" and is_model(spec.ref):
            torch.manual_seed(seed)
            model = create_model(spec.ref)
        elif spec.kind == "random":
            from rsfm.hub import load_untrained

            torch.manual_seed(seed)
            model = load_untrained(spec.ref, hub)
        else:
            model = load(spec.ref, hub)
        self.encoder: nn.Module = getattr(model, "encoder", model).eval()
        self.patch_size = int(self.encoder.patch_size)
        self.config = model_config(model)  # the architecture, for a trained head around it

    def _padded(self, image: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        height, width = image.shape[-2:]
        p = self.patch_size
        pad_h, pad_w = (-height) % p, (-width) % p
        return F.pad(image, (0, pad_w, 0, pad_h)), height, width

    @torch.no_grad()
    def pooled(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Mean of the patch tokens [B, D]."""
        padded, _, _ = self._padded(image)
        return self.encoder.forward_pooled(padded, wavelengths, pool="avg")

    @torch.no_grad()
    def dense(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Patch features bilinearly upsampled to the input's pixels [B, D, H, W]."""
        padded, height, width = self._padded(image)
        features = self.encoder.forward_spatial(padded, wavelengths)
        up = F.interpolate(features, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return up[..., :height, :width]


# ------------------------------------------------------------------------------ features
def _batches(dataset: ChipDataset, size: int = 16) -> Any:
    for start in range(0, len(dataset), size):
        items = [dataset[i] for i in range(start, min(start + size, len(dataset)))]
        shapes = {tuple(item["image"].shape) for item in items}
        if len(shapes) == 1:
            yield items
        else:
            yield from ([item] for item in items)


def _raw_pooled(image: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    weights = valid[:, None].float()
    count = weights.sum(dim=(2, 3)).clamp(min=1)
    mean = (image * weights).sum(dim=(2, 3)) / count
    var = ((image - mean[..., None, None]) ** 2 * weights).sum(dim=(2, 3)) / count
    return torch.cat([mean, var.sqrt()], dim=1)


def image_features(
    dataset: ChipDataset, encoder: FrozenEncoder | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One vector per sample and the targets (class ids or multi-hot)."""
    features, targets = [], []
    for items in _batches(dataset):
        image = torch.stack([item["image"] for item in items])
        waves = torch.stack([item["wavelengths"] for item in items])
        valid = torch.stack([item["valid"] for item in items])
        if encoder is None:
            features.append(_raw_pooled(image, valid))
        else:
            features.append(encoder.pooled(image, waves))
        targets.append(torch.stack([item["label"] for item in items]))
    return torch.cat(features), torch.cat(targets)


def subsample(
    x: torch.Tensor, y: torch.Tensor, max_items: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of at most ``max_items`` rows of ``(x, y)``."""
    if len(y) <= max_items:
        return x, y
    pick = torch.randperm(len(y), generator=generator)[:max_items]
    return x[pick], y[pick]


def pixel_features(
    dataset: ChipDataset, encoder: FrozenEncoder | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and class ids of every labelled pixel."""
    features, targets = [], []
    for items in _batches(dataset):
        image = torch.stack([item["image"] for item in items])
        mask = torch.stack([item["mask"] for item in items])
        if encoder is None:
            dense = image
        else:
            dense = encoder.dense(image, torch.stack([item["wavelengths"] for item in items]))
        keep = mask != IGNORE_INDEX
        features.append(dense.permute(0, 2, 3, 1)[keep])
        targets.append(mask[keep])
    return torch.cat(features), torch.cat(targets)


# ------------------------------------------------------------------------------ scoring
def _scores(info: DatasetInfo, pred_scores: torch.Tensor, target: torch.Tensor) -> dict:
    k = info.num_classes
    if info.task == "multilabel":
        return {"mAP": mean_average_precision(pred_scores, target)}
    pred = pred_scores.argmax(dim=1)
    if info.task == "classification":
        return {"accuracy": accuracy(pred, target)}
    metrics = {"mIoU": mean_iou(pred, target, k), "OA": accuracy(pred, target)}
    if "water" in info.class_names:
        metrics["water_IoU"] = float(
            iou_per_class(pred, target, k)[info.class_names.index("water")]
        )
    return metrics


def ndwi_scores(info: DatasetInfo, test_raw: ChipDataset) -> dict[str, float]:
    """NDWI > 0 as water on the raw (unnormalised) test pixels."""
    preds, targets = [], []
    for sample in test_raw.samples:
        waves = sample["wavelengths"]
        green = int((waves - NDWI_GREEN_NM).abs().argmin())
        nir = int((waves - NDWI_NIR_NM).abs().argmin())
        g, n = sample["image"][green], sample["image"][nir]
        water = ((g - n) / (g + n).clamp(min=1e-6) > 0).long()
        keep = sample["mask"] != IGNORE_INDEX
        preds.append(water[keep])
        targets.append(sample["mask"][keep])
    pred, target = torch.cat(preds), torch.cat(targets)
    water_id = info.class_names.index("water")
    if info.num_classes == 2:
        pred = torch.where(pred == 1, water_id, 1 - water_id)
        return _scores(info, F.one_hot(pred, 2).float(), target)
    # several classes: NDWI only says water or not, so only the water IoU is scored
    truth = target == water_id
    union = int((truth | (pred == 1)).sum())
    iou = float((truth & (pred == 1)).sum()) / union if union else float("nan")
    return {"water_IoU": iou}


def _normalise_with_card(sample: dict[str, Any], card: Any) -> torch.Tensor:
    """The sample's image normalised with the card's statistics of its sensor."""
    stats = card.normalization.get(sample["sensor"])
    if stats is None:
        known = ", ".join(card.normalization) or "none"
        raise ValueError(
            f"{card.name}@{card.version} has no normalisation for {sample['sensor']} "
            f"(it was trained on: {known})"
        )
    return normalise_sample(sample, {sample["sensor"]: stats})["image"]


@torch.no_grad()
def score_segmenter(ref: str, test_raw: ChipDataset, hub: str | None = None) -> dict[str, float]:
    """A fine-tuned segmenter from the hub, applied as a user would, scored on raw test chips.

    Each chip is normalised with the card's statistics of its sensor (never the dataset's),
    padded to the patch size, predicted whole, and scored on its labelled pixels.
    """
    from rsfm.hub import load

    model = load(ref, hub)
    card = model.rsfm_card
    info = test_raw.info
    if list(card.class_names or []) != list(info.class_names):
        raise ValueError(
            f"{ref} predicts {card.class_names}, {info.name} is labelled {list(info.class_names)}"
        )
    patch = int(model.encoder.patch_size)
    preds, targets = [], []
    for sample in test_raw.samples:
        image = _normalise_with_card(sample, card)[None]
        height, width = image.shape[-2:]
        padded = F.pad(image, (0, (-width) % patch, 0, (-height) % patch))
        logits = model(padded, sample["wavelengths"])[..., :height, :width]
        keep = sample["mask"] != IGNORE_INDEX
        preds.append(logits[0].permute(1, 2, 0)[keep])
        targets.append(sample["mask"][keep])
    return _scores(info, torch.cat(preds), torch.cat(targets))


def evaluate_one(
    dataset_name: str,
    spec: EncoderSpec,
    protocols: Sequence[str],
    seed: int,
    root: str | None = None,
    hub: str | None = None,
    splits: tuple[ChipDataset, ChipDataset] | None = None,
    cache: dict[tuple[str, str], Any] | None = None,
    recipe: HeadRecipe | None = None,
) -> list[Result]:
    """Scores of one encoder on one dataset for each protocol, with one seed.

    ``cache`` keeps the features of seed-independent encoders (hub models, ``raw``) between
    seeds, keyed by (encoder, dataset); ``recipe`` trains the heads of ``frozen_head`` and
    ``finetune`` (default :class:`~rsfm.evaluation.heads.HeadRecipe`).
    """
    train, test = splits or (load_dataset(dataset_name, "train", root), None)
    if test is None:
        test = load_dataset(dataset_name, "test", root)
    info = train.info
    if spec.kind == "ndwi":
        if "water" not in info.class_names:
            return []
        return [Result(spec.text, info.name, "threshold", seed, ndwi_scores(info, test))]
    if spec.kind == "mf":
        if info.task != "segmentation":
            return []
        return [Result(spec.text, info.name, "matched_filter", seed, _mf(train, test, seed, cache))]
    if "predict" in protocols:
        if spec.kind != "hub":
            return []
        test.band_stats = {}
        metrics = score_segmenter(spec.ref, test, hub)
        return [Result(spec.text, info.name, "predict", seed, metrics)]
    stats = train.compute_band_stats()
    train.band_stats, test.band_stats = stats, stats
    results = []
    heads = [p for p in protocols if p in HEAD_PROTOCOLS]
    if heads and spec.kind != "raw":
        frozen = FrozenEncoder(spec, seed, hub)
        for protocol in heads:
            model = head_model(frozen.config, frozen.encoder, info, seed, recipe or HeadRecipe())
            train_head(model, train, protocol, seed, recipe or HeadRecipe())
            metrics = _scores(info, *predict_split(model, test))
            results.append(Result(spec.text, info.name, protocol, seed, metrics))
    protocols = [p for p in protocols if p not in HEAD_PROTOCOLS]
    if not protocols:
        return results
    key = (spec.text, info.name)
    if cache is not None and spec.kind != "random" and key in cache:
        (x_train, y_train), (x_test, y_test) = cache[key]
    else:
        encoder = None if spec.kind == "raw" else FrozenEncoder(spec, seed, hub)
        extract = pixel_features if info.task == "segmentation" else image_features
        (x_train, y_train), (x_test, y_test) = extract(train, encoder), extract(test, encoder)
        if cache is not None and spec.kind != "random":
            cache[key] = (x_train, y_train), (x_test, y_test)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = subsample(x_train, y_train, MAX_TRAIN_PIXELS, generator)
    x_test, y_test = subsample(x_test, y_test, MAX_TEST_PIXELS, generator)
    multilabel = info.task == "multilabel"
    for protocol in protocols:
        if protocol == "linear":
            layer, scaler = fit_linear_probe(
                x_train, y_train, info.num_classes, multilabel=multilabel, seed=seed
            )
            scores = predict_linear(layer, scaler, x_test)
        elif protocol == "knn":
            scores = knn_scores(x_train, y_train, x_test, info.num_classes, multilabel=multilabel)
        else:
            raise ValueError(f"unknown protocol {protocol!r}; expected one of {PROTOCOLS}")
        results.append(Result(spec.text, info.name, protocol, seed, _scores(info, scores, y_test)))
    return results


def _mf(
    train: ChipDataset, test: ChipDataset, seed: int, cache: dict[tuple[str, str], Any] | None
) -> dict[str, float]:
    """Matched-filter scores on the raw spectra (features shared with ``raw`` via ``cache``)."""
    stats = train.compute_band_stats()
    train.band_stats, test.band_stats = stats, stats
    key = ("raw", train.info.name)
    if cache is not None and key in cache:
        (x_train, y_train), (x_test, y_test) = cache[key]
    else:
        (x_train, y_train), (x_test, y_test) = (
            pixel_features(train, None),
            pixel_features(test, None),
        )
        if cache is not None:
            cache[key] = (x_train, y_train), (x_test, y_test)
    generator = torch.Generator().manual_seed(seed)
    x_train, y_train = subsample(x_train, y_train, 10 * MAX_TRAIN_PIXELS, generator)
    x_test, y_test = subsample(x_test, y_test, MAX_TEST_PIXELS, generator)
    scores = matched_filter_scores(x_train, y_train, x_test, train.info.num_classes)
    return _scores(train.info, scores, y_test)


def summarise(results: Sequence[Result]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (dataset, protocol, encoder, metric), in input order."""
    groups: dict[tuple[str, str, str, str], list[float]] = {}
    for r in results:
        for metric, value in r.metrics.items():
            groups.setdefault((r.dataset, r.protocol, r.encoder, metric), []).append(value)
    rows = []
    for (dataset, protocol, encoder, metric), values in groups.items():
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / max(1, len(values) - 1))
        rows.append(
            dict(
                dataset=dataset, protocol=protocol, encoder=encoder, metric=metric,
                mean=mean, std=std if len(values) > 1 else 0.0, n_seeds=len(values),
            )
        )  # fmt: skip
    return rows

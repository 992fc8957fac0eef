"""Multi-modal co-learning (MDiCo-style) of a :class:`~rsfm.models.colearning.CoLearningModel`.

Loss (weights from ``loss_weights``; a term with weight 0 is not computed):

- ``main``: the task loss of every modality's main head on ``concat[specific, shared]``,
  averaged over the modalities of the batch;
- ``auxiliary``: the task loss of the shared auxiliary head on ``specific`` and on ``shared``
  (mean of the two), averaged over modalities;
- ``contrastive``: symmetric NT-Xent (InfoNCE in both directions, ``temperature``) between the
  ``shared`` parts of every pair of modalities: the same place is the positive, the other
  places of the batch the negatives; averaged over pairs;
- ``discriminative``: cross-entropy of the modality-discrimination heads on the ``specific``
  (and ``unused``) halves against the modality index, averaged over modalities.

Samples without a label (class ``IGNORE_INDEX``, a NaN multi-label vector or target; e.g. the
unlabelled pairs of ``MultiModalDataModule(unlabelled_windows=...)``) train only the
contrastive and discrimination terms: co-learning then also learns from pairs nobody labelled.

Task losses: cross-entropy (``classification``), binary cross-entropy (``multilabel``), MSE
(``regression``: the window mean of the ``target`` raster, or ``target`` [B, K]). Validation and
test log the metrics of the prediction from all modalities (``val/accuracy`` ...) and of every
modality alone (``val/s1/accuracy`` ...): accuracy (OA), balanced accuracy and macro F1; mAP
and macro F1; or R2 and RMSE. The contrastive and discrimination terms need two modalities;
with one (a single-modality baseline) only the task terms train.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanSquaredError, MetricCollection, R2Score
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAveragePrecision,
    MultilabelF1Score,
)

from rsfm.data.labels import IGNORE_INDEX
from rsfm.hub.checkpoint_keys import TaskFacts, TrainingStage
from rsfm.models.colearning import CoLearningModel, PooledSmartiesEncoder
from rsfm.models.finetune import load_backbone_weights
from rsfm.models.registry import create_model
from rsfm.tasks.base import BaseTask, pretraining_stage

TASK_TYPES = ("classification", "multilabel", "regression")
LOSS_TERMS = ("main", "auxiliary", "contrastive", "discriminative")
DEFAULT_LOSS_WEIGHTS = {"main": 1.0, "auxiliary": 1.0, "contrastive": 1.0, "discriminative": 1.0}
PAIR_BATCH_KEYS = (
    {"image": "image", "wavelengths": "wavelengths"},
    {"image": "pair_image", "wavelengths": "pair_wavelengths"},
)


def nt_xent(first: torch.Tensor, second: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric NT-Xent between two views ``[B, d]`` whose rows ``i`` belong together.

    Hand-written: it is two cross-entropies over cosine similarities; open_clip's ``ClipLoss``
    (the library version) costs seconds of import and wants a logit scale, not a temperature.
    """
    first, second = F.normalize(first, dim=1), F.normalize(second, dim=1)
    logits = first @ second.T / temperature  # [B, B]: row i's positive is column i
    target = torch.arange(first.shape[0], device=first.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


class CoLearningTask(BaseTask):
    """Co-learning of specific and shared per-modality encoders (see the module docstring).

    Args:
        model: Registered co-learning variant (``colearn_tiny_s1s2``; ``colearn_tiny_s1`` is
            the single-modality baseline).
        num_outputs: Classes or regression outputs K (overrides the variant's).
        task_type: ``classification``, ``multilabel`` or ``regression``.
        model_args: Further overrides of the variant's init args (``modalities`` ...).
        loss_weights: Weights of ``main``, ``auxiliary``, ``contrastive``, ``discriminative``
            (missing terms keep their default 1.0).
        temperature: NT-Xent temperature.
        threshold: Probability above which a class counts as predicted (multi-label F1).
        batch_keys: ``{modality: {"image": key, "wavelengths": key}}`` of the batches (default:
            the datamodule's ``modality_keys``, else the model's first modality reads
            ``image``, the second ``pair_image``).
        weights: ``{modality: checkpoint / .safetensors / hub name}`` of pretrained SMARTIES
            encoders, loaded into that modality's specific and shared encoders.
        **kwargs: :class:`~rsfm.tasks.base.BaseTask` (optimiser) arguments.
    """

    task_kind = "co-learning"
    stage_kind = "fine-tuning"

    def __init__(
        self,
        model: str = "colearn_tiny_s1s2",
        num_outputs: int | None = None,
        task_type: str = "classification",
        model_args: dict[str, Any] | None = None,
        loss_weights: dict[str, float] | None = None,
        temperature: float = 0.1,
        threshold: float = 0.5,
        batch_keys: dict[str, dict[str, str]] | None = None,
        weights: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if task_type not in TASK_TYPES:
            raise ValueError(f"unknown task_type {task_type!r}; expected one of {TASK_TYPES}")
        unknown = sorted(set(loss_weights or {}) - set(LOSS_TERMS))
        if unknown:
            raise ValueError(f"unknown loss_weights {unknown}; expected among {LOSS_TERMS}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        overrides = dict(model_args or {})
        if num_outputs is not None:
            overrides["num_outputs"] = num_outputs
        network = create_model(model, **overrides)
        if not isinstance(network, CoLearningModel):
            raise TypeError(f"{model!r} is not a co-learning model (CoLearningModel)")
        self.model = network
        self.task_type = task_type
        self.num_outputs = network.num_outputs
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(loss_weights or {})}
        self.temperature = temperature
        self.threshold = threshold
        self.batch_keys = {k: dict(v) for k, v in (batch_keys or {}).items()} or None
        self.weights = dict(weights or {})
        if weights:
            self.band_stats = self._load_encoder_weights(weights)
        metrics = self.build_metrics()
        groups = ["all", *network.modality_names]
        self.val_metrics = nn.ModuleDict(
            {g: metrics.clone(prefix=_prefix("val", g)) for g in groups}
        )
        self.test_metrics = nn.ModuleDict(
            {g: metrics.clone(prefix=_prefix("test", g)) for g in groups}
        )

    # ------------------------------------------------------------------ setup
    def _load_encoder_weights(self, weights: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        stats: dict[str, dict[str, Any]] = {}
        stages: list[TrainingStage] = []
        for name, source in weights.items():
            if name not in self.model.modality_names:
                raise ValueError(f"weights for unknown modality {name!r}")
            backbone = self.model.init_args["modalities"][name]["encoder"]
            for encoders in (self.model.specific_encoders, self.model.shared_encoders):
                encoder = encoders[name]
                if not isinstance(encoder, PooledSmartiesEncoder):
                    raise ValueError(f"modality {name!r}: only SMARTIES encoders load weights")
                shim = SimpleNamespace(encoder=encoder.encoder, init_args={"backbone": backbone})
                loaded = load_backbone_weights(shim, source) or {}
                stats.update(loaded)
            stage = pretraining_stage(source, loaded)
            if stage is not None:
                stages.append(stage)
        if stages:  # one pretraining stage: every modality's source together
            self.source_stage = TrainingStage(
                "pretraining",
                sensors={k: v for s in stages for k, v in s.sensors.items()},
                bad_bands={k: v for s in stages for k, v in s.bad_bands.items()},
                datasets=[d for s in stages for d in s.datasets],
            )
        return stats

    def build_metrics(self) -> MetricCollection:
        """OA, balanced accuracy + macro F1; mAP + macro F1; or R2 + RMSE."""
        k = self.num_outputs
        if self.task_type == "classification":
            return MetricCollection(
                {
                    "accuracy": MulticlassAccuracy(k, average="micro"),
                    "accuracy_macro": MulticlassAccuracy(k, average="macro"),
                    "f1": MulticlassF1Score(k, average="macro"),
                }
            )
        if self.task_type == "multilabel":
            return MetricCollection(
                {
                    "map": MultilabelAveragePrecision(k, average="macro"),
                    "f1": MultilabelF1Score(k, threshold=self.threshold, average="macro"),
                }
            )
        return MetricCollection(
            {"r2": R2Score(), "rmse": MeanSquaredError(squared=False, num_outputs=k)}
        )

    def setup(self, stage: str) -> None:
        """Take batch keys from the datamodule (BaseTask: statistics, class names, facts)."""
        super().setup(stage)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if self.batch_keys is None:
            keys = getattr(datamodule, "modality_keys", None)
            self.batch_keys = dict(keys) if keys else self._default_keys()
        if not set(self.batch_keys) & set(self.model.modality_names):
            raise ValueError(
                f"the batches hold modalities {sorted(self.batch_keys)}, the model "
                f"{self.model.modality_names}: none in common"
            )

    def _default_keys(self) -> dict[str, dict[str, str]]:
        names = self.model.modality_names[: len(PAIR_BATCH_KEYS)]
        return {name: dict(PAIR_BATCH_KEYS[i]) for i, name in enumerate(names)}

    # ------------------------------------------------------------------ batches and losses
    def inputs(self, batch: Mapping[str, Any]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{modality: (image, wavelengths)}`` of the model's modalities present in a batch."""
        keys = self.batch_keys or self._default_keys()
        return {
            name: (batch[keys[name]["image"]], batch[keys[name]["wavelengths"]])
            for name in self.model.modality_names
            if name in keys and keys[name]["image"] in batch
        }

    def targets(self, batch: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(targets, labelled samples): int64 [B], float [B, K] or, for regression, [B, K].

        Unlabelled samples (class ``IGNORE_INDEX``, a NaN multi-label vector or target) are
        flagged False: they still train the contrastive and discrimination terms.
        """
        if self.task_type == "regression":
            target = batch["target"].float()
            if target.ndim > 2:  # a target raster per window: its mean over known pixels
                target = target.flatten(1).nanmean(dim=1, keepdim=True)
            target = target.reshape(target.shape[0], -1)
            return target, torch.isfinite(target).all(dim=1)
        label = batch["label"]
        if self.task_type == "multilabel":
            label = label.float()
            return label, torch.isfinite(label).all(dim=1)
        label = label.long()
        return label, label != IGNORE_INDEX

    def task_loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, binary cross-entropy or MSE."""
        if self.task_type == "classification":
            return F.cross_entropy(output, target)
        if self.task_type == "multilabel":
            return F.binary_cross_entropy_with_logits(output, target)
        return F.mse_loss(output, target)

    def losses(
        self,
        out: Mapping[str, Any],
        target: torch.Tensor,
        labelled: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms and their sum ``loss`` from :meth:`CoLearningModel.heads`.

        Args:
            out: :meth:`CoLearningModel.heads` output for a batch of B samples.
            target: Targets of the B samples.
            labelled: Bool ``[B]``: the samples the task terms (``main``, ``auxiliary``) use;
                the contrastive and discrimination terms use every sample (all when None).
        """
        names = list(out["logits"])
        weights = self.loss_weights
        zero = out["logits"][names[0]].new_zeros(())
        rows = slice(None) if labelled is None or bool(labelled.all()) else labelled
        terms: dict[str, torch.Tensor] = {}
        if labelled is None or bool(labelled.any()):
            target = target[rows]
            terms["main"] = torch.stack(
                [self.task_loss(out["logits"][n][rows], target) for n in names]
            )
            if weights["auxiliary"]:
                terms["auxiliary"] = torch.stack(
                    [
                        0.5 * self.task_loss(out["aux_specific"][n][rows], target)
                        + 0.5 * self.task_loss(out["aux_shared"][n][rows], target)
                        for n in names
                    ]
                )
        if weights["contrastive"] and len(names) > 1:
            shared = out["shared"]
            terms["contrastive"] = torch.stack(
                [
                    nt_xent(shared[a], shared[b], self.temperature)
                    for a, b in itertools.combinations(names, 2)
                ]
            )
        if weights["discriminative"] and len(names) > 1:
            per_modality = []
            for name in names:
                index = self.model.modality_names.index(name)
                logits = [out["modality_specific"][name]]
                if out["modality_unused"]:
                    logits.append(out["modality_unused"][name])
                label = torch.full((logits[0].shape[0],), index, device=logits[0].device)
                per_modality.append(torch.stack([F.cross_entropy(x, label) for x in logits]).mean())
            terms["discriminative"] = torch.stack(per_modality)
        result = {name: value.mean() for name, value in terms.items()}
        result["loss"] = sum((weights[n] * v for n, v in result.items()), zero)
        return result

    # ------------------------------------------------------------------ steps
    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Single-modality logits ``[B, K]`` (the modality recognised from the wavelengths)."""
        return self.model(image, wavelengths)

    def _step(
        self, batch: Mapping[str, Any]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any], torch.Tensor, int] | None:
        """Losses, :meth:`CoLearningModel.encode` parts and targets of the labelled samples.

        Unlabelled samples (see :meth:`targets`) are encoded for the contrastive and
        discrimination terms when the batch holds two modalities, else dropped.
        """
        inputs = self.inputs(batch)
        if not inputs:
            return None
        target, labelled = self.targets(batch)
        paired = len(inputs) > 1 and bool(
            self.loss_weights["contrastive"] or self.loss_weights["discriminative"]
        )
        if not bool(labelled.any()) and not paired:
            return None
        if not paired and not bool(labelled.all()):
            inputs = {n: (x[labelled], _rows(w, labelled)) for n, (x, w) in inputs.items()}
            target, labelled = target[labelled], labelled[labelled]
        parts = self.model.encode(inputs)
        losses = self.losses(self.model.heads(parts), target, labelled)
        if not bool(labelled.all()):  # metrics and predictions: the labelled samples only
            parts = {n: {k: v[labelled] for k, v in p.items()} for n, p in parts.items()}
            target = target[labelled]
        return losses, parts, target, int(target.shape[0])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Weighted co-learning loss; logs ``train/loss`` and every term (``train/main`` ...)."""
        self.log(
            "train/skipped_windows",
            float(batch.get("n_skipped", 0)),
            reduce_fx="sum",
            on_step=False,
            on_epoch=True,
            batch_size=1,
        )
        result = self._step(batch)
        if result is None:
            return None
        losses, _, _, size = result
        size = max(size, 1)  # a batch of unlabelled pairs only still trains (label-free terms)
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=size)
        terms = {f"train/{k}": v for k, v in losses.items() if k != "loss"}
        self.log_dict(terms, batch_size=size)
        return losses["loss"]

    def _eval_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        result = self._step(batch)
        if result is None:
            return None
        losses, parts, target, size = result
        if not size:  # unlabelled pairs only: nothing to score
            return None
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        groups = {"all": parts, **{n: {n: p} for n, p in parts.items()}}
        for group, subset in groups.items():
            output = self.model.predict_from_parts(subset)
            metrics[group].update(*self._metric_inputs(output, target))
            self.log_dict(metrics[group], on_step=False, on_epoch=True, batch_size=size)
        self.log(f"{stage}/loss", losses["loss"], prog_bar=stage == "val", batch_size=size)
        return losses["loss"]

    def _metric_inputs(
        self, output: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        output = output.detach()
        if self.task_type == "multilabel":
            return torch.sigmoid(output), target.long()
        if self.task_type == "regression" and self.num_outputs == 1:
            return output.squeeze(1), target.squeeze(1)
        return output, target

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Loss; metrics of all modalities together and of each alone."""
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Same as validation, logged under ``test/``."""
        return self._eval_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Logits from all modalities and from each alone, with the windows' georeferencing."""
        inputs = self.inputs(batch)
        parts = self.model.encode(inputs)
        alone = {n: self.model.predict_from_parts({n: p}) for n, p in parts.items()}
        return {
            "prediction": self.model.predict_from_parts(parts),
            "alone": alone,
            "bounds": batch.get("bounds"),
            "crs": batch.get("crs"),
        }

    # ------------------------------------------------------------------ facts
    def task_facts(self) -> TaskFacts:
        """Co-learning facts: the task type, modalities and batch keys (in ``extra``)."""
        facts = super().task_facts()
        facts.output = "values" if self.task_type == "regression" else "classes"
        facts.extra.update(
            {
                "task_type": self.task_type,
                "modalities": list(self.model.modality_names),
                "batch_keys": self.batch_keys,
                "weights": self.weights or None,
            }
        )
        return facts

    def restore_task_facts(self, facts: TaskFacts) -> None:
        """BaseTask's, plus the batch keys of the run."""
        super().restore_task_facts(facts)
        self.batch_keys = facts.extra.get("batch_keys") or self.batch_keys


def _rows(wavelengths: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Per-sample wavelengths ``[B, C]`` of the kept rows (shared ``[C]`` ones unchanged)."""
    return wavelengths[kept] if wavelengths.ndim > 1 else wavelengths


def _prefix(stage: str, group: str) -> str:
    return f"{stage}/" if group == "all" else f"{stage}/{group}/"

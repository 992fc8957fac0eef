"""Segmentation quality assessment: regress a segmenter's per-image accuracy (RS-SQA-style).

Batches come from :class:`~rsfm.data.datamodules.sqa.SQADataModule`: ``segmenter_features`` [B, F],
``image`` [B, C, H, W] + ``wavelengths``, ``target`` [B] (OA or mIoU) and ``image_id`` [B].
Metrics (validation / test): SRCC, PLCC, KRCC (scipy), RMSE, and best-method recommendation
accuracy: for every image assessed with several segmenters, whether the one with the highest
predicted score is (one of) the truly best.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torchmetrics import CatMetric

import rsfm.models.sqa  # noqa: F401  (registers the SQA variants)
from rsfm.models.registry import create_model
from rsfm.models.sqa import SQAModel
from rsfm.tasks.base import BaseTask

LOSSES = ("mse", "rank", "mse+rank")


def recommendation_accuracy(
    pred: np.ndarray, target: np.ndarray, image_ids: np.ndarray, tolerance: float = 1e-6
) -> tuple[float, float, int]:
    """How often the top-scored segmenter of an image is truly the best.

    Args:
        pred: Predicted scores [N].
        target: True accuracies [N].
        image_ids: Image of each record [N]; images with one record are skipped.
        tolerance: Ties within this of the best accuracy count as best.

    Returns:
        ``(accuracy, mean regret (best accuracy - chosen accuracy), images compared)``.
    """
    hits, regrets = [], []
    for image in np.unique(image_ids):
        rows = np.flatnonzero(image_ids == image)
        if rows.size < 2:
            continue
        chosen = rows[np.argmax(pred[rows])]
        best = target[rows].max()
        hits.append(target[chosen] >= best - tolerance)
        regrets.append(best - target[chosen])
    if not hits:
        return float("nan"), float("nan"), 0
    return float(np.mean(hits)), float(np.mean(regrets)), len(hits)


def sqa_metrics(
    pred: np.ndarray | torch.Tensor,
    target: np.ndarray | torch.Tensor,
    image_ids: np.ndarray | torch.Tensor | None = None,
) -> dict[str, float]:
    """SRCC, PLCC, KRCC (scipy), RMSE and, with ``image_ids``, recommendation accuracy/regret."""
    pred = np.asarray(pred, dtype=np.float64).ravel()
    target = np.asarray(target, dtype=np.float64).ravel()
    constant = pred.size < 2 or np.ptp(pred) == 0 or np.ptp(target) == 0
    out = {
        "srcc": float("nan") if constant else float(stats.spearmanr(pred, target).statistic),
        "plcc": float("nan") if constant else float(stats.pearsonr(pred, target).statistic),
        "krcc": float("nan") if constant else float(stats.kendalltau(pred, target).statistic),
        "rmse": float(np.sqrt(np.mean((pred - target) ** 2))) if pred.size else float("nan"),
    }
    if image_ids is not None:
        ids = np.asarray(image_ids).ravel()
        accuracy, regret, _ = recommendation_accuracy(pred, target, ids)
        out["recommendation_accuracy"] = accuracy
        out["recommendation_regret"] = regret
    return out


def pairwise_rank_loss(pred: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """Hinge loss over every pair of the batch whose targets differ (torch's margin ranking)."""
    i, j = torch.triu_indices(pred.shape[0], pred.shape[0], offset=1, device=pred.device)
    sign = torch.sign(target[i] - target[j])
    keep = sign != 0
    if not bool(keep.any()):
        return pred.sum() * 0.0
    return F.margin_ranking_loss(pred[i][keep], pred[j][keep], sign[keep], margin=margin)


class SQATask(BaseTask):
    """Train an :class:`~rsfm.models.sqa.SQAModel` to predict segmentation accuracy.

    Args:
        model: Registered SQA variant (``sqa_tiny``, ``sqa_base``).
        model_args: Overrides of the variant's init args (``use_semantic: false`` = baseline).
        segmenter_dim: Segmenter feature size; None = taken from the datamodule
            (``feature_dim``, and its ``feature_keys``) when the model is built.
        loss: ``mse``, ``rank`` (pairwise margin ranking) or ``mse+rank``.
        rank_weight: Weight of the ranking term in ``mse+rank``.
        rank_margin: Margin of the ranking hinge.
        cache_semantic: Reuse each image's frozen semantic features (exact: the encoder is
            frozen and in eval mode) instead of recomputing them every epoch.
        lr: Absolute learning rate (this task's default: 2e-3).
        weight_decay: Decoupled weight decay (this task's default: 1e-4).
        warmup_epochs: Linear warm-up in epochs (this task's default: none).
        **kwargs: Further :class:`~rsfm.tasks.base.BaseTask` (optimiser) arguments.
    """

    task_kind = "segmentation-quality-assessment"
    output_kind = "quality"
    stage_kind = "fine-tuning"

    def __init__(
        self,
        model: str = "sqa_tiny",
        model_args: dict[str, Any] | None = None,
        segmenter_dim: int | None = None,
        loss: str = "mse",
        rank_weight: float = 1.0,
        rank_margin: float = 0.02,
        cache_semantic: bool = True,
        lr: float | None = 2e-3,
        weight_decay: float = 1e-4,
        warmup_epochs: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
        self.model_name = model
        self.model_args = dict(model_args or {})
        self.loss_name = loss
        self.rank_weight = rank_weight
        self.rank_margin = rank_margin
        self.cache_semantic = cache_semantic
        self.model: SQAModel | None = None
        self._semantic_cache: dict[int, torch.Tensor] = {}
        if segmenter_dim is not None or "segmenter_dim" in self.model_args:
            self._build(segmenter_dim)
        self.eval_outputs = {
            stage: torch.nn.ModuleDict({k: CatMetric() for k in ("pred", "target", "image_id")})
            for stage in ("val", "test")
        }
        self.val_outputs = self.eval_outputs["val"]
        self.test_outputs = self.eval_outputs["test"]

    def _build(self, segmenter_dim: int | None, feature_keys: list[str] | None = None) -> None:
        args = dict(self.model_args)
        if segmenter_dim is not None:
            args["segmenter_dim"] = int(segmenter_dim)
        if feature_keys is not None:
            args["feature_keys"] = list(feature_keys)
        network = create_model(self.model_name, **args)
        if not isinstance(network, SQAModel):
            raise TypeError(f"{self.model_name!r} is not an SQA model (SQAModel)")
        self.model = network

    # ------------------------------------------------------------------ model and data
    def configure_model(self) -> None:
        """Build the model once the datamodule tells the segmenter feature size."""
        if self.model is not None:
            return
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        dim = getattr(datamodule, "feature_dim", None)
        if dim is None:
            if self._trainer is None:  # load_from_checkpoint: on_load_checkpoint builds it
                return
            raise ValueError("give segmenter_dim, or a datamodule with `feature_dim`")
        self._build(dim, getattr(datamodule, "feature_keys", None))

    # ------------------------------------------------------------------ forward
    def semantic(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """Frozen semantic features of the batch's images (cached per ``image_id``)."""
        model = self.model
        if model is None or model.semantic is None:
            return None
        ids = batch.get("image_id")
        if not self.cache_semantic or ids is None:
            return model.semantic_features(batch["image"], batch["wavelengths"])
        keys = [int(i) for i in ids]
        missing = [n for n, k in enumerate(keys) if k not in self._semantic_cache]
        if missing:
            rows = torch.as_tensor(missing, device=batch["image"].device)
            waves = batch["wavelengths"]
            waves = waves[rows] if waves.ndim == 2 else waves
            computed = model.semantic_features(batch["image"][rows], waves)
            for n, value in zip(missing, computed, strict=True):
                self._semantic_cache[keys[n]] = value.detach()
        return torch.stack([self._semantic_cache[k] for k in keys])

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        """Predicted accuracies ``[B]`` of a batch."""
        return self.model(batch["segmenter_features"], semantic=self.semantic(batch))

    def compute_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """MSE, pairwise ranking, or both."""
        if self.loss_name == "mse":
            return F.mse_loss(pred, target)
        rank = pairwise_rank_loss(pred, target, self.rank_margin)
        if self.loss_name == "rank":
            return rank
        return F.mse_loss(pred, target) + self.rank_weight * rank

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One optimisation step; logs ``train/loss``."""
        pred = self(batch)
        loss = self.compute_loss(pred, batch["target"])
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        pred = self(batch)
        loss = self.compute_loss(pred, batch["target"])
        outputs = self.eval_outputs[stage]
        outputs["pred"].update(pred.detach())
        outputs["target"].update(batch["target"])
        outputs["image_id"].update(batch["image_id"].to(pred.dtype))
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=pred.shape[0])
        return loss

    def _log_epoch(self, stage: str) -> None:
        outputs = self.eval_outputs[stage]
        if not outputs["pred"].update_count:
            return
        values = {k: m.compute().detach().cpu().numpy() for k, m in outputs.items()}
        for metric in outputs.values():
            metric.reset()
        metrics = sqa_metrics(values["pred"], values["target"], values["image_id"])
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, batch_size=1)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss; predictions collected for the epoch's correlation metrics."""
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Same as validation, logged under ``test/``."""
        return self._eval_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        """SRCC / PLCC / KRCC / RMSE / recommendation accuracy over the whole split."""
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Same metrics on the test split."""
        self._log_epoch("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Predicted accuracies with their image ids and segmenters."""
        return {
            "pred": self(batch),
            "image_id": batch.get("image_id"),
            "segmenter": batch.get("segmenter"),
        }

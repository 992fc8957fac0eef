"""Pixel-wise (or image-level) regression on a spectrum-aware encoder."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanAbsoluteError, MeanSquaredError, MetricCollection, R2Score

from rsfm.tasks.finetune import FineTuneTask

LOSSES = ("mse", "l1", "huber")


class RegressionTask(FineTuneTask):
    """Regression of continuous targets: MSE / L1 / Huber loss; MAE, RMSE and R² metrics.

    Dense models predict ``[B, K, H, W]`` against ``target`` [B, H, W] (K = 1) or
    [B, K, H, W]; pooled models predict ``[B, K]`` against ``target`` [B] or [B, K]. Pixels or
    samples whose target is NaN, or whose image pixel is invalid, are left out of loss and
    metrics; metrics pool every remaining value (all channels together).

    Args:
        model: Registered variant (``smarties_tiny_reg``).
        num_outputs: Regressed channels K.
        loss: ``mse``, ``l1`` or ``huber``.
        **kwargs: Further :class:`~rsfm.tasks.finetune.FineTuneTask` arguments.
    """

    task_kind = "regression"
    output_kind = "values"

    def __init__(
        self,
        model: str = "smarties_tiny_reg",
        num_outputs: int = 1,
        loss: str = "mse",
        **kwargs: Any,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
        super().__init__(model, num_outputs=num_outputs, **kwargs)
        self.num_outputs = num_outputs
        self.loss_name = loss
        self._init_metrics()

    def build_metrics(self) -> MetricCollection:
        """Mean absolute error, root mean squared error and R² over valid values."""
        return MetricCollection(
            {
                "mae": MeanAbsoluteError(),
                "rmse": MeanSquaredError(squared=False),
                "r2": R2Score(),
            }
        )

    def _aligned_target(self, output: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """``target`` shaped like ``output`` with NaN where it must be ignored."""
        target = batch["target"].to(output.dtype)
        if target.ndim == output.ndim - 1:
            target = target.unsqueeze(1)  # [B, H, W] -> [B, 1, H, W]; [B] -> [B, 1]
        if target.shape != output.shape:
            raise ValueError(
                f"target {tuple(target.shape)} does not match predictions {tuple(output.shape)}"
            )
        if output.ndim == 4 and "valid" in batch:
            target = target.masked_fill(~batch["valid"].bool().unsqueeze(1), float("nan"))
        return target

    def loss_and_targets(
        self, output: torch.Tensor, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The loss over finite targets; flattened predictions and targets for the metrics."""
        target = self._aligned_target(output, batch)
        keep = torch.isfinite(target)
        if not bool(keep.any()):
            return None
        preds, values = output[keep], target[keep]
        if self.loss_name == "mse":
            loss = F.mse_loss(preds, values)
        elif self.loss_name == "l1":
            loss = F.l1_loss(preds, values)
        else:
            loss = F.smooth_l1_loss(preds, values)
        return loss, preds.detach(), values

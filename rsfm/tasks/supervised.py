"""Training / validation / test steps shared by the supervised dense and image-level tasks."""

from __future__ import annotations

from typing import Any

import torch


class SupervisedSteps:
    """Lightning steps around a task's ``loss_and_targets(output, batch)``.

    The task provides ``forward(image, wavelengths)``, ``loss_and_targets`` (``(loss, preds,
    targets)`` or None when nothing in the batch is labelled) and ``val_metrics`` /
    ``test_metrics``; it may override :meth:`augment_train_batch`.
    """

    def augment_train_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The training batch as the model should see it (no augmentation by default)."""
        return batch

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One optimisation step; logs ``train/loss`` and skipped all-nodata windows."""
        self.log_skipped_windows(batch.get("n_skipped", 0))
        if "image" not in batch:
            return None
        batch = self.augment_train_batch(batch)
        result = self.loss_and_targets(self(batch["image"], batch["wavelengths"]), batch)
        if result is None:
            return None
        loss = result[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor | None:
        if "image" not in batch:
            return None
        result = self.loss_and_targets(self(batch["image"], batch["wavelengths"]), batch)
        if result is None:
            return None
        loss, preds, target = result
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(preds, target)
        size = batch["image"].shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=size)
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Loss and metrics on held-out windows."""
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Same as validation, logged under ``test/``."""
        return self._eval_step(batch, "test")

"""Shared LightningModule base: optimiser, warm-up + cosine schedule, batch-size-scaled LR."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch
from timm.optim import create_optimizer_v2


class BaseTask(pl.LightningModule):
    """Base for every rsfm training objective.

    Subclasses build their networks in ``configure_models`` and implement the steps. The optimiser
    is timm's ``create_optimizer_v2`` (weight decay skipped for norms, biases and 1-D params);
    the schedule is linear warm-up then cosine decay, stepped every optimiser step.

    Args:
        optimizer: timm optimiser name (``adamw``, ``lamb``, ``sgd`` ...).
        lr: Absolute learning rate. When None, ``base_lr * effective_batch / 256`` (MAE rule),
            with effective batch = batch size x gradient accumulation x world size.
        base_lr: Base learning rate for the scaling rule.
        weight_decay: Decoupled weight decay.
        betas: Adam betas.
        warmup_epochs: Linear warm-up length in epochs (fractions allowed).
        min_lr: Learning rate at the end of the cosine decay.
        scheduler: ``cosine`` (warm-up + cosine) or ``constant`` (warm-up then flat).
    """

    def __init__(
        self,
        optimizer: str = "adamw",
        lr: float | None = None,
        base_lr: float = 1.5e-4,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_epochs: float = 1.0,
        min_lr: float = 0.0,
        scheduler: str = "cosine",
    ) -> None:
        super().__init__()
        if scheduler not in {"cosine", "constant"}:
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {scheduler!r}")
        self.optimizer_name = optimizer
        self.lr = lr
        self.base_lr = base_lr
        self.weight_decay = weight_decay
        self.betas = tuple(betas)
        self.warmup_epochs = warmup_epochs
        self.min_lr = min_lr
        self.scheduler_name = scheduler

    def effective_batch_size(self) -> int:
        """Samples per optimiser step across all processes."""
        trainer = self.trainer
        datamodule = getattr(trainer, "datamodule", None)
        batch = int(getattr(datamodule, "batch_size", 1) or 1)
        return batch * int(trainer.accumulate_grad_batches) * int(trainer.world_size)

    def resolved_lr(self) -> float:
        """The learning rate actually used (explicit ``lr`` or the scaling rule)."""
        if self.lr is not None:
            return float(self.lr)
        return self.base_lr * self.effective_batch_size() / 256.0

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (by default) with per-step warm-up + cosine decay."""
        lr = self.resolved_lr()
        kwargs: dict[str, Any] = {}
        if self.optimizer_name.lower() in {"adam", "adamw", "lamb", "nadamw", "adan"}:
            kwargs["betas"] = self.betas
        optimizer = create_optimizer_v2(
            self, opt=self.optimizer_name, lr=lr, weight_decay=self.weight_decay, **kwargs
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = max(1, total // max(1, int(self.trainer.max_epochs or 1)))
        warmup = min(total - 1, int(round(self.warmup_epochs * steps_per_epoch)))
        floor = self.min_lr / lr if lr > 0 else 0.0
        cosine = self.scheduler_name == "cosine"

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if not cosine:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        # LambdaLR: torch's SequentialLR cannot express a cosine floor relative to a scaled LR.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1},
        }

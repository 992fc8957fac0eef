"""Semantic segmentation on a spectrum-aware encoder (fine-tuning: :mod:`rsfm.tasks.finetune`)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from rsfm.data.labels import IGNORE_INDEX
from rsfm.hub.checkpoint_keys import TaskFacts
from rsfm.tasks.finetune import FineTuneTask


class SegmentationTask(FineTuneTask):
    """Semantic segmentation: cross-entropy with an ignore index, mIoU and pixel accuracy.

    Batches carry ``mask`` int64 [B, H, W] (``ignore_index`` = unlabelled); invalid image pixels
    (``valid`` False) are ignored too.

    Args:
        model: Registered dense variant (``smarties_tiny_seg_upernet``, ``..._seg_linear``).
        num_classes: Classes K.
        ignore_index: Label value excluded from loss and metrics.
        class_weights: Per-class loss weights (e.g. inverse frequencies).
        **kwargs: :class:`FineTuneTask` arguments (backbone, weights, mode, optimiser ...).
    """

    task_kind = "segmentation"
    output_kind = "classes"

    def __init__(
        self,
        model: str = "smarties_tiny_seg_upernet",
        num_classes: int = 7,
        ignore_index: int = IGNORE_INDEX,
        class_weights: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, num_outputs=num_classes, **kwargs)
        if not self.model.dense:
            raise ValueError(f"segmentation needs a dense head; {model!r} has a pooled head")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        if weight is not None and weight.numel() != num_classes:
            raise ValueError(f"{weight.numel()} class_weights for {num_classes} classes")
        self.register_buffer("class_weights", weight, persistent=False)
        self._init_metrics()

    def task_facts(self) -> TaskFacts:
        """The fine-tuning facts plus the ignore index."""
        facts = super().task_facts()
        facts.ignore_index = self.ignore_index
        return facts

    def build_metrics(self) -> MetricCollection:
        """mIoU (macro Jaccard over classes present), micro and macro pixel accuracy."""
        k, ignore = self.num_classes, self.ignore_index
        return MetricCollection(
            {
                "miou": MulticlassJaccardIndex(k, average="macro", ignore_index=ignore),
                "accuracy": MulticlassAccuracy(k, average="micro", ignore_index=ignore),
                "accuracy_macro": MulticlassAccuracy(k, average="macro", ignore_index=ignore),
            }
        )

    def loss_and_targets(
        self, output: torch.Tensor, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Cross-entropy over labelled, valid pixels; None if a batch has none."""
        mask = batch["mask"].long()
        if "valid" in batch:
            mask = mask.masked_fill(~batch["valid"].bool(), self.ignore_index)
        if not bool((mask != self.ignore_index).any()):
            return None
        loss = F.cross_entropy(
            output, mask, weight=self.class_weights, ignore_index=self.ignore_index
        )
        return loss, output.detach(), mask

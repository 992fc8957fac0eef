"""Image classification (single- and multi-label) on a spectrum-aware encoder."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MultilabelAveragePrecision,
    MultilabelF1Score,
)

from rsfm.tasks.finetune import FineTuneTask


class ClassificationTask(FineTuneTask):
    """Scene classification from pooled encoder features.

    Single-label batches carry ``label`` int64 [B] (cross-entropy; accuracy micro/macro, macro
    F1). Multi-label batches carry ``label`` float32 [B, K] multi-hot (binary cross-entropy;
    micro and macro mean average precision, macro F1 at ``threshold``).

    Args:
        model: Registered pooled variant (``smarties_tiny_cls``).
        num_classes: Classes K.
        multilabel: Multi-label (sigmoid per class) instead of single-label (softmax).
        threshold: Probability above which a class counts as predicted (multi-label F1).
        label_smoothing: Cross-entropy label smoothing (single-label).
        mode: Training mode (a linear probe by default).
        **kwargs: Further :class:`~rsfm.tasks.finetune.FineTuneTask` arguments.
    """

    task_kind = "classification"
    output_kind = "classes"

    def __init__(
        self,
        model: str = "smarties_tiny_cls",
        num_classes: int = 7,
        multilabel: bool = False,
        threshold: float = 0.5,
        label_smoothing: float = 0.0,
        mode: str = "linear_probe",
        **kwargs: Any,
    ) -> None:
        super().__init__(model, num_outputs=num_classes, mode=mode, **kwargs)
        if self.model.dense:
            raise ValueError(f"classification needs a pooled head; {model!r} is dense")
        self.task_kind = "multilabel" if multilabel else "classification"
        self.num_classes = num_classes
        self.multilabel = multilabel
        self.threshold = threshold
        self.label_smoothing = label_smoothing
        self._init_metrics()

    def build_metrics(self) -> MetricCollection:
        """Accuracy / F1 (single-label) or mAP micro+macro / F1 (multi-label)."""
        k = self.num_classes
        if self.multilabel:
            return MetricCollection(
                {
                    "map": MultilabelAveragePrecision(k, average="macro"),
                    "map_micro": MultilabelAveragePrecision(k, average="micro"),
                    "f1": MultilabelF1Score(k, threshold=self.threshold, average="macro"),
                    "f1_micro": MultilabelF1Score(k, threshold=self.threshold, average="micro"),
                }
            )
        return MetricCollection(
            {
                "accuracy": MulticlassAccuracy(k, average="micro"),
                "accuracy_macro": MulticlassAccuracy(k, average="macro"),
                "f1": MulticlassF1Score(k, average="macro"),
            }
        )

    def loss_and_targets(
        self, output: torch.Tensor, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Cross-entropy or binary cross-entropy against ``label``."""
        label = batch["label"]
        if self.multilabel:
            target = label.float()
            loss = F.binary_cross_entropy_with_logits(output, target)
            return loss, torch.sigmoid(output.detach()), target.long()
        target = label.long()
        loss = F.cross_entropy(output, target, label_smoothing=self.label_smoothing)
        return loss, output.detach(), target

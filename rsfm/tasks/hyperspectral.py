"""Hyperspectral segmentation: binary (e.g. methane plume) or multi-class (minerals, land cover).

Any registered model mapping ``(image, wavelengths) -> [B, K, H, W]`` trains here
(``hyperseg_tiny``, ``hyperefficientvit_tiny``, ``segformer_tiny``, ``smarties_tiny_hsi_seg``).

- **Binary** (``num_classes=2``, the default): the plume logit is ``z = l_1 - l_0`` of a 2-output
  model (or ``l_0`` of a 1-output one), trained with ``BCEWithLogits`` (``pos_weight`` for rare
  positives). ``sigmoid(l_1 - l_0)`` equals the 2-class softmax, so ``rsfm tile`` on a 2-output
  model writes plume classes / probabilities directly.
- **Multi-class**: cross-entropy with optional class weights.

Unlabelled pixels (``mask == ignore_index``) and invalid pixels (``valid`` False) are ignored.
Training batches get random flips and 90-degree rotations (image, mask and valid together).
Metrics (torchmetrics): precision, recall, F1, IoU and AUPRC (average precision), macro-averaged
over classes in the multi-class case. Data (normalisation with outlier cut, bad-band dropping,
weighted sampling of rare positives) comes from
:class:`rsfm.data.datamodules.hyperspectral.HyperspectralDataModule`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAveragePrecision,
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAveragePrecision,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

import rsfm.models.hyperspectral  # noqa: F401  (registers the hyperspectral variants)
from rsfm.data.labels import IGNORE_INDEX
from rsfm.hub.checkpoint_keys import TaskFacts
from rsfm.models.registry import create_model
from rsfm.tasks.base import BaseTask
from rsfm.tasks.supervised import SupervisedSteps

AUPRC_BINS = 200  # binned average precision: constant memory on any validation set


def augment_batch(
    batch: dict[str, Any], generator: torch.Generator | None = None
) -> dict[str, Any]:
    """Random flip + 90-degree rotation per sample, applied alike to image, mask and valid.

    Hand-written with ``torch.rot90`` / ``torch.flip``: exact for integer masks (no resampling),
    which interpolating augmentation libraries do not guarantee.
    """
    image = batch["image"]
    if image.shape[-1] != image.shape[-2]:
        return batch  # rotations need square windows
    keys = [k for k in ("image", "mask", "valid") if isinstance(batch.get(k), torch.Tensor)]
    draws = torch.randint(0, 8, (image.shape[0],), generator=generator).tolist()
    out = {k: list(batch[k].unbind(0)) for k in keys}
    for i, code in enumerate(draws):
        for key in keys:
            value = out[key][i]
            if code >= 4:
                value = value.flip(-1)
            out[key][i] = torch.rot90(value, code % 4, dims=(-2, -1))
    return {**batch, **{k: torch.stack(v) for k, v in out.items()}}


class HyperspectralSegmentationTask(SupervisedSteps, BaseTask):
    """Segmentation of hyperspectral scenes (see the module docstring).

    Args:
        model: Registered model taking ``(image, wavelengths)``.
        num_classes: Classes K; 2 means binary (background / target).
        model_args: Overrides of the model's init args (``num_outputs`` defaults to K).
        binary: Force the binary (BCE) or multi-class (CE) objective; None: binary iff K == 2.
        ignore_index: Label value excluded from loss and metrics.
        pos_weight: BCE weight of positive pixels (binary).
        class_weights: CE weight per class (multi-class).
        threshold: Probability above which a pixel is positive (binary metrics).
        augment: Random flips and 90-degree rotations of training batches.
        lr: Absolute learning rate (this task's default: 1e-3).
        weight_decay: Decoupled weight decay (this task's default: 0.01).
        warmup_epochs: Linear warm-up length in epochs (this task's default: none).
        **kwargs: Further :class:`~rsfm.tasks.base.BaseTask` (optimiser) arguments.
    """

    task_kind = "segmentation"
    output_kind = "classes"
    stage_kind = "fine-tuning"

    def __init__(
        self,
        model: str = "hyperseg_tiny",
        num_classes: int = 2,
        model_args: dict[str, Any] | None = None,
        binary: bool | None = None,
        ignore_index: int = IGNORE_INDEX,
        pos_weight: float | None = None,
        class_weights: list[float] | None = None,
        threshold: float = 0.5,
        augment: bool = True,
        lr: float | None = 1e-3,
        weight_decay: float = 0.01,
        warmup_epochs: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        self.binary = num_classes == 2 if binary is None else bool(binary)
        if self.binary and num_classes != 2:
            raise ValueError(f"a binary task has 2 classes, got num_classes={num_classes}")
        overrides = {"num_outputs": num_classes, **(model_args or {})}
        self.model = create_model(model, **overrides)
        outputs = int(getattr(self.model, "num_outputs", overrides["num_outputs"]))
        if outputs not in ((1, 2) if self.binary else (num_classes,)):
            raise ValueError(
                f"model {model!r} has {outputs} outputs; the task needs "
                f"{'1 or 2' if self.binary else num_classes}"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.threshold = threshold
        self.augment = augment
        self.pos_weight = pos_weight
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        if weight is not None and weight.numel() != num_classes:
            raise ValueError(f"{weight.numel()} class_weights for {num_classes} classes")
        self.register_buffer("class_weights", weight, persistent=False)
        metrics = self.build_metrics()
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    # ------------------------------------------------------------------ metrics and loss
    def build_metrics(self) -> MetricCollection:
        """Precision, recall, F1, IoU and AUPRC (binary, or macro over classes)."""
        if self.binary:
            t = self.threshold
            return MetricCollection(
                {
                    "precision": BinaryPrecision(threshold=t),
                    "recall": BinaryRecall(threshold=t),
                    "f1": BinaryF1Score(threshold=t),
                    "iou": BinaryJaccardIndex(threshold=t),
                    "auprc": BinaryAveragePrecision(thresholds=AUPRC_BINS),
                }
            )
        k, ignore = self.num_classes, self.ignore_index
        return MetricCollection(
            {
                "precision": MulticlassPrecision(k, average="macro", ignore_index=ignore),
                "recall": MulticlassRecall(k, average="macro", ignore_index=ignore),
                "f1": MulticlassF1Score(k, average="macro", ignore_index=ignore),
                "iou": MulticlassJaccardIndex(k, average="macro", ignore_index=ignore),
                "auprc": MulticlassAveragePrecision(
                    k, average="macro", thresholds=AUPRC_BINS, ignore_index=ignore
                ),
            }
        )

    def target_logit(self, output: torch.Tensor) -> torch.Tensor:
        """Binary logit ``[B, H, W]``: ``l_1 - l_0`` (2 outputs) or ``l_0`` (1 output)."""
        return output[:, 0] if output.shape[1] == 1 else output[:, 1] - output[:, 0]

    def probabilities(self, output: torch.Tensor) -> torch.Tensor:
        """Per-pixel probabilities: ``[B, H, W]`` (binary) or ``[B, K, H, W]``."""
        if self.binary:
            return torch.sigmoid(self.target_logit(output))
        return output.softmax(dim=1)

    def loss_and_targets(
        self, output: torch.Tensor, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(loss, predictions, targets) over labelled valid pixels; None if there are none."""
        mask = batch["mask"].long()
        if "valid" in batch:
            mask = mask.masked_fill(~batch["valid"].bool(), self.ignore_index)
        labelled = mask != self.ignore_index
        if not bool(labelled.any()):
            return None
        if self.binary:
            logit = self.target_logit(output)[labelled]
            target = (mask[labelled] == 1).to(logit.dtype)
            pos_weight = (
                None
                if self.pos_weight is None
                else torch.tensor(self.pos_weight, dtype=logit.dtype, device=logit.device)
            )
            loss = F.binary_cross_entropy_with_logits(logit, target, pos_weight=pos_weight)
            return loss, torch.sigmoid(logit.detach()), target.long()
        loss = F.cross_entropy(
            output, mask, weight=self.class_weights, ignore_index=self.ignore_index
        )
        return loss, output.detach(), mask

    # ------------------------------------------------------------------ steps
    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """The model's logits ``[B, K, H, W]``."""
        return self.model(image, wavelengths)

    def augment_train_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Random flips and 90-degree rotations of image, mask and valid pixels together."""
        return augment_batch(batch) if self.augment else batch

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Probabilities with the windows' georeferencing."""
        output = self(batch["image"], batch["wavelengths"])
        return {
            "prediction": self.probabilities(output),
            "bounds": batch.get("bounds"),
            "crs": batch.get("crs"),
        }

    # ------------------------------------------------------------------ facts
    def task_facts(self) -> TaskFacts:
        """Segmentation facts: ignore index, and whether the objective is binary."""
        facts = super().task_facts()
        facts.ignore_index = self.ignore_index
        facts.extra["binary"] = self.binary
        return facts

"""Fine-tuning base task shared by segmentation, classification and regression.

``FineTuneTask`` holds what every fine-tuning objective shares: building a registered
:class:`~rsfm.models.finetune.FineTuneModel`, the training mode (``linear_probe``, ``frozen``,
``full``, ``lora``), pretrained weights and their normalisation statistics (handed to the
datamodule), layer-wise LR decay, and the pretraining stage of the encoder's source (recorded
in checkpoints beside the fine-tuning stage; :class:`~rsfm.tasks.base.BaseTask` writes them).
Subclasses implement :meth:`FineTuneTask.loss_and_targets` and :meth:`FineTuneTask.build_metrics`
and take only their own arguments (the rest by keyword).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from torchmetrics import MetricCollection

import rsfm.models.finetune  # noqa: F401  (registers the fine-tuning variants)
from rsfm.hub.checkpoint_keys import TaskFacts
from rsfm.models.finetune import FineTuneModel, load_backbone_weights
from rsfm.models.registry import create_model
from rsfm.tasks.base import BaseTask, pretraining_stage
from rsfm.tasks.supervised import SupervisedSteps


class FineTuneTask(SupervisedSteps, BaseTask):
    """Shared fine-tuning logic (see the module docstring).

    Args:
        model: Registered fine-tuning variant, e.g. ``smarties_tiny_seg_upernet``.
        num_outputs: Classes or regression channels (overrides the variant's).
        backbone: Registered encoder/MAE name replacing the variant's backbone.
        weights: ``MAEPretrainTask`` checkpoint path, ``.safetensors`` file or hub name.
        mode: ``linear_probe``, ``frozen``, ``full`` or ``lora``.
        model_args: Further overrides of the variant's init args (``head``, ``head_args`` ...).
        lora_rank: Adapter rank (mode ``lora``).
        lora_alpha: Adapter scaling numerator (mode ``lora``).
        lora_target: Linear layers that get adapters (mode ``lora``).
        layer_decay: Layer-wise LR decay factor (timm, BEiT-style); None = off.
        **kwargs: :class:`~rsfm.tasks.base.BaseTask` (optimiser) arguments.
    """

    stage_kind = "fine-tuning"

    def __init__(
        self,
        model: str,
        num_outputs: int | None = None,
        backbone: str | None = None,
        weights: str | None = None,
        mode: str = "frozen",
        model_args: dict[str, Any] | None = None,
        lora_rank: int = 8,
        lora_alpha: float = 16.0,
        lora_target: Sequence[str] = ("qkv", "proj"),
        layer_decay: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        overrides = dict(model_args or {})
        if num_outputs is not None:
            overrides["num_outputs"] = num_outputs
        if backbone is not None:
            overrides["backbone"] = backbone
        if mode == "lora":
            overrides.setdefault(
                "lora", {"rank": lora_rank, "alpha": lora_alpha, "target": list(lora_target)}
            )
        network = create_model(model, **overrides)
        if not isinstance(network, FineTuneModel):
            raise TypeError(f"{model!r} is not a fine-tuning model (FineTuneModel)")
        network.set_mode(mode)
        self.model = network
        self.mode = mode
        self.weights = weights
        self.layer_decay = layer_decay
        if weights:
            self.band_stats = load_backbone_weights(network, weights)
            self.source_stage = pretraining_stage(weights, self.band_stats)

    # ------------------------------------------------------------------ subclass hooks
    def loss_and_targets(
        self, output: torch.Tensor, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(loss, predictions, targets) for the metrics, or None when nothing is labelled."""
        raise NotImplementedError

    def build_metrics(self) -> MetricCollection:
        """The evaluation metrics (cloned for validation and test)."""
        raise NotImplementedError

    def _init_metrics(self) -> None:
        metrics = self.build_metrics()
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    # ------------------------------------------------------------------ steps
    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """The model's predictions (``[B, K, H, W]`` or ``[B, K]``)."""
        return self.model(image, wavelengths)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Raw model outputs with the windows' georeferencing."""
        output = self(batch["image"], batch["wavelengths"]) if "image" in batch else None
        return {"prediction": output, "bounds": batch.get("bounds"), "crs": batch.get("crs")}

    # ------------------------------------------------------------------ facts
    def task_facts(self) -> TaskFacts:
        """BaseTask's facts plus the training mode and the weights' source."""
        facts = super().task_facts()
        facts.extra.update({"mode": self.mode, "weights": self.weights})
        return facts

    # ------------------------------------------------------------------ optimiser
    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers should not decay."""
        return {f"model.{name}" for name in self.model.no_weight_decay()}

    def configure_optimizers(self) -> dict[str, Any]:
        """BaseTask's optimiser and schedule; with ``layer_decay``, timm's layer-wise groups."""
        config = super().configure_optimizers()
        if self.layer_decay is None:
            return config
        lr = self.resolved_lr()
        kwargs: dict[str, Any] = {}
        if self.optimizer_name.lower() in {"adam", "adamw", "lamb", "nadamw", "adan"}:
            kwargs["betas"] = self.betas
        optimizer = create_optimizer_v2(
            self.model,
            opt=self.optimizer_name,
            lr=lr,
            weight_decay=self.weight_decay,
            layer_decay=self.layer_decay,
            **kwargs,
        )
        # timm's schedulers apply the groups' lr_scale; torch's LambdaLR does not, so bake it in.
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        factor = config["lr_scheduler"]["scheduler"].lr_lambdas[0]
        config["optimizer"] = optimizer
        config["lr_scheduler"]["scheduler"] = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return config

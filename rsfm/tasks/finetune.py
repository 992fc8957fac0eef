"""Fine-tuning base task shared by segmentation, classification and regression.

``FineTuneTask`` holds what every fine-tuning objective shares: building a registered
:class:`~rsfm.models.finetune.FineTuneModel`, the training mode (``linear_probe``, ``frozen``,
``full``, ``lora``), pretrained weights and their normalisation statistics (handed to the
datamodule), layer-wise LR decay, and checkpoints that carry the model recipe and statistics.
Subclasses implement :meth:`FineTuneTask.loss_and_targets` and :meth:`FineTuneTask.build_metrics`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from timm.optim import create_optimizer_v2
from torchmetrics import MetricCollection

import rsfm.models.finetune  # noqa: F401  (registers the fine-tuning variants)
from rsfm.models.finetune import FineTuneModel, load_backbone_weights
from rsfm.models.registry import create_model, model_config
from rsfm.tasks.base import BaseTask
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
        optimizer: timm optimiser name.
        lr: Absolute learning rate; None = ``base_lr * effective_batch / 256``.
        base_lr: Base learning rate of the scaling rule.
        weight_decay: Decoupled weight decay.
        betas: Adam betas.
        warmup_epochs: Linear warm-up length in epochs.
        min_lr: Final learning rate of the cosine decay.
        scheduler: ``cosine`` or ``constant``.
    """

    task_name = "finetune"

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
        optimizer: str = "adamw",
        lr: float | None = None,
        base_lr: float = 1e-3,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_epochs: float = 1.0,
        min_lr: float = 0.0,
        scheduler: str = "cosine",
    ) -> None:
        super().__init__(
            optimizer, lr, base_lr, weight_decay, betas, warmup_epochs, min_lr, scheduler
        )
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
        self.band_stats: dict[str, dict[str, Any]] | None = None
        self.class_names: list[str] | None = None
        if weights:
            self.band_stats = load_backbone_weights(network, weights)

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

    # ------------------------------------------------------------------ data and checkpoints
    def setup(self, stage: str) -> None:
        """Hand pretrained normalisation statistics to the datamodule; record the ones used."""
        datamodule = getattr(self._trainer, "datamodule", None)
        if datamodule is None:
            return
        if self.band_stats and hasattr(datamodule, "use_band_stats"):
            datamodule.use_band_stats(self.band_stats)
        used = getattr(datamodule, "band_stats", None) or {}
        if used:
            own = {name: stats.to_dict() for name, stats in used.items()}
            self.band_stats = {**(self.band_stats or {}), **own}
        self.class_names = getattr(datamodule, "class_names", None) or self.class_names

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the model recipe, normalisation statistics and task facts."""
        checkpoint["rsfm_model_config"] = model_config(self.model)
        if self.band_stats is not None:
            checkpoint["rsfm_band_stats"] = self.band_stats
        checkpoint["rsfm_task"] = {
            "task": self.task_name,
            "mode": self.mode,
            "class_names": self.class_names,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the statistics and class names saved by :meth:`on_save_checkpoint`."""
        self.band_stats = checkpoint.get("rsfm_band_stats", self.band_stats)
        self.class_names = checkpoint.get("rsfm_task", {}).get("class_names", self.class_names)

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

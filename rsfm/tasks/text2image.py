"""Text-to-image diffusion training (Text2Earth-style) as a LightningModule."""

from __future__ import annotations

from typing import Any

import torch

from rsfm.models.registry import create_model
from rsfm.tasks.base import BaseTask
from rsfm.tasks.ema import EMAMixin


class Text2ImageTask(EMAMixin, BaseTask):
    """Train a text- and resolution-conditioned diffusion model on caption batches.

    Batches are :class:`rsfm.data.datamodules.captions.CaptionDataModule` dicts (``image``,
    ``wavelengths``, ``caption`` list, ``gsd`` with NaN = unknown, ``valid``). Captions and
    resolutions are dropped independently (``text_drop`` / ``gsd_drop``) so the model also
    learns the unconditional and text-only predictions that guidance needs.

    An exponential moving average of the trainable weights (diffusers' ``EMAModel``) is kept
    when ``ema_decay`` is set; validation runs on the EMA weights, checkpoints store them under
    ``ema_model.`` (push them with ``rsfm.hub.push_checkpoint(..., prefix="ema_model.")`` or
    ``rsfm.hub.push(task.ema_network(), ...)``).

    Args:
        model: Registered model name (``text2earth_tiny``, ``text2earth_base``).
        model_args: Overrides of the variant's init args (e.g. ``prediction_type``).
        text_drop: Probability of training a sample with the empty caption.
        gsd_drop: Probability (independent) of training a sample with the null resolution.
        min_snr_gamma: Min-SNR-gamma loss weighting (None: plain MSE).
        ema_decay: EMA decay (None: no EMA).
        ema_warmup: Ramp the EMA decay up over the first steps.
        lr: Absolute learning rate (this task's default: 1e-4).
        base_lr: Base learning rate of the scaling rule (this task's default: 1e-4).
        weight_decay: Decoupled weight decay (this task's default: 0.01).
        warmup_epochs: Linear warm-up length in epochs (this task's default: none).
        scheduler: ``cosine`` or ``constant`` (this task's default).
        **kwargs: Further :class:`~rsfm.tasks.base.BaseTask` (optimiser) arguments.
    """

    task_kind = "text-to-image"
    output_kind = "image"
    classes_from_data = False  # caption labels are no output classes

    def __init__(
        self,
        model: str = "text2earth_tiny",
        model_args: dict[str, Any] | None = None,
        text_drop: float = 0.1,
        gsd_drop: float = 0.1,
        min_snr_gamma: float | None = 5.0,
        ema_decay: float | None = 0.9999,
        ema_warmup: bool = True,
        lr: float | None = 1e-4,
        base_lr: float = 1e-4,
        weight_decay: float = 0.01,
        warmup_epochs: float = 0.0,
        scheduler: str = "constant",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            lr=lr,
            base_lr=base_lr,
            weight_decay=weight_decay,
            warmup_epochs=warmup_epochs,
            scheduler=scheduler,
            **kwargs,
        )
        for name, value in (("text_drop", text_drop), ("gsd_drop", gsd_drop)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        import rsfm.models.text2earth  # noqa: F401  (registers the text2earth variants)

        self.model = create_model(model, **(model_args or {}))
        self.text_drop, self.gsd_drop, self.min_snr_gamma = text_drop, gsd_drop, min_snr_gamma
        self.init_ema(ema_decay, ema_warmup)

    # ------------------------------------------------------------------------------ steps
    def _loss(self, batch: dict[str, Any], generator: torch.Generator | None = None) -> Any:
        return self.model(
            batch["image"],
            batch.get("wavelengths"),
            batch["caption"],
            batch.get("gsd"),
            valid=batch.get("valid"),
            text_drop=self.text_drop if generator is None else 0.0,
            gsd_drop=self.gsd_drop if generator is None else 0.0,
            min_snr_gamma=self.min_snr_gamma,
            generator=generator,
        )["loss"]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One denoising step; logs ``train/loss``."""
        if "image" not in batch:
            return None
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=int(batch["image"].shape[0]))
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str, seed: int) -> torch.Tensor | None:
        # Fixed timesteps and noise per batch so epochs compare like with like.
        if "image" not in batch:
            return None
        generator = torch.Generator(device=self.device).manual_seed(seed)
        loss = self._loss(batch, generator)
        size = int(batch["image"].shape[0])
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Conditional denoising loss on held-out images (EMA weights)."""
        return self._eval_step(batch, "val", 1234 + batch_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Same as validation, logged under ``test/``."""
        return self._eval_step(batch, "test", 4321 + batch_idx)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Images generated for the batch's captions and GSDs (default sampler settings)."""
        generator = torch.Generator(device=self.device).manual_seed(batch_idx)
        images = self.model.generate(batch["caption"], batch.get("gsd"), generator=generator)
        return {"image": images, "caption": batch["caption"], "gsd": batch.get("gsd")}

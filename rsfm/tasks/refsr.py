"""Reference-guided super-resolution training (CRefDiff-style diffusion on triplets).

Batches come from :class:`rsfm.data.datamodules.triplets.TripletDataModule`
(``lr``, ``hr``, ``reference``,
``reference_valid``, ``valid``). The reference strength during training is the reference's valid
mask, so a missing (degraded) reference is strength 0 and the model learns to work without one.
Validation samples a few DDIM steps from a better start and logs PSNR against the target and
against bicubic upsampling. An optional exponential moving average of the weights (diffusers'
``EMAModel`` through :func:`rsfm.models.layers.diffusion.make_ema`)
is used for validation and stored in
checkpoints under ``ema_model.``.
"""

from __future__ import annotations

from typing import Any

import torch

from rsfm.evaluation.super_resolution import masked_psnr
from rsfm.models.crefdiff import CRefDiffModel
from rsfm.models.registry import create_model, model_config
from rsfm.tasks.base import BaseTask
from rsfm.tasks.ema import EMAMixin


class RefSRTask(EMAMixin, BaseTask):
    """Train a :class:`~rsfm.models.crefdiff.CRefDiffModel`.

    Args:
        model: Registered variant (``crefdiff_tiny``, ``srdiff_tiny``, ``crefdiff_x10``).
        model_args: Overrides of the variant's init args (e.g. ``in_channels``).
        use_reference: Feed the reference (False trains reference-free even with branches).
        val_steps: DDIM steps of the validation sampling.
        val_start: Start of validation sampling (``noise``, ``lr`` or ``reference``).
        val_start_fraction: Fraction of the schedule run from a better start.
        max_timestep_fraction: Train only timesteps below this fraction of the schedule (the
            low-noise part a better start uses; 1.0 = the whole schedule).
        snr_gamma: Min-SNR-gamma loss weighting (None: plain MSE).
        ema_decay: Keep an EMA of the weights with this decay (None: no EMA).
        ema_warmup: Ramp the EMA decay up over the first steps (short runs still average).
        optimizer: timm optimiser name.
        lr: Absolute learning rate; None = ``base_lr * effective_batch / 256``.
        base_lr: Base learning rate of the scaling rule.
        weight_decay: Decoupled weight decay.
        betas: Adam betas.
        warmup_epochs: Linear warm-up length in epochs.
        min_lr: Final learning rate of the cosine decay.
        scheduler: ``cosine`` or ``constant``.
    """

    task_name = "refsr"

    def __init__(
        self,
        model: str = "crefdiff_tiny",
        model_args: dict[str, Any] | None = None,
        use_reference: bool = True,
        val_steps: int = 8,
        val_start: str = "lr",
        val_start_fraction: float = 0.5,
        max_timestep_fraction: float = 1.0,
        snr_gamma: float | None = None,
        ema_decay: float | None = None,
        ema_warmup: bool = True,
        optimizer: str = "adamw",
        lr: float | None = 1e-3,
        base_lr: float = 1e-3,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_epochs: float = 0.1,
        min_lr: float = 0.0,
        scheduler: str = "cosine",
    ) -> None:
        super().__init__(
            optimizer, lr, base_lr, weight_decay, betas, warmup_epochs, min_lr, scheduler
        )
        self.save_hyperparameters()
        network = create_model(model, **(model_args or {}))
        if not isinstance(network, CRefDiffModel):
            raise TypeError(f"{model!r} is not a CRefDiffModel")
        self.model = network
        self.use_reference = use_reference and network.uses_reference
        self.val_steps, self.val_start = val_steps, val_start
        self.val_start_fraction = val_start_fraction
        self.max_timestep_fraction, self.snr_gamma = max_timestep_fraction, snr_gamma
        self.init_ema(ema_decay, ema_warmup)
        self.band_stats: dict[str, dict[str, Any]] | None = None

    # ------------------------------------------------------------------ steps

    def reference_inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor | None, Any]:
        """(reference, strength map) of a batch; (None, None) when not used."""
        if not self.use_reference or "reference" not in batch:
            return None, None
        strength = batch["reference_valid"].to(batch["reference"].dtype)[:, None]
        return batch["reference"], strength

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Denoising loss on the batch's triplets."""
        reference, strength = self.reference_inputs(batch)
        loss = self.model.training_loss(
            batch["lr"], batch["hr"], reference, strength, valid=batch.get("valid"),
            max_timestep_fraction=self.max_timestep_fraction, snr_gamma=self.snr_gamma,
        )  # fmt: skip
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["lr"].shape[0])
        return loss

    def super_resolve(self, batch: dict[str, Any], steps: int | None = None) -> torch.Tensor:
        """Sample HR predictions for a batch (normalised units)."""
        reference, strength = self.reference_inputs(batch)
        generator = torch.Generator(device=batch["lr"].device).manual_seed(0)
        scale = int(batch["hr"].shape[-1] // batch["lr"].shape[-1]) if "hr" in batch else None
        return self.model.sample(
            batch["lr"], reference, strength if strength is not None else 1.0,
            steps=steps or self.val_steps, start=self.val_start,
            start_fraction=self.val_start_fraction, scale=scale, generator=generator,
        )  # fmt: skip

    def _eval_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        reference, strength = self.reference_inputs(batch)
        size = batch["lr"].shape[0]
        loss = self.model.training_loss(
            batch["lr"], batch["hr"], reference, strength, batch.get("valid")
        )
        pred = self.super_resolve(batch)
        bicubic = self.model.upsample(batch["lr"], batch["hr"].shape[-2:])
        valid = batch["valid"]
        span = float(batch["hr"][valid[:, None].expand_as(batch["hr"])].max() - batch["hr"].min())
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=size)
        self.log(
            f"{stage}/psnr",
            masked_psnr(pred, batch["hr"], valid, span),
            sync_dist=True,
            batch_size=size,
        )
        psnr_bicubic = masked_psnr(bicubic, batch["hr"], valid, span)
        self.log(f"{stage}/psnr_bicubic", psnr_bicubic, sync_dist=True, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Loss and PSNR (sampled vs bicubic) on held-out windows."""
        return self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Same as validation, logged under ``test/``."""
        return self._eval_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Super-resolved windows with their georeferencing."""
        return {
            "prediction": self.super_resolve(batch),
            "bounds": batch.get("bounds"),
            "crs": batch.get("crs"),
        }

    def setup(self, stage: str) -> None:
        """Use the checkpoint's statistics, or record the datamodule's."""
        datamodule = getattr(self._trainer, "datamodule", None)
        if datamodule is None:
            return
        if self.band_stats and hasattr(datamodule, "use_band_stats"):
            datamodule.use_band_stats(self.band_stats)
        datamodule.setup(stage)
        used = getattr(datamodule, "band_stats", None) or {}
        if used:
            self.band_stats = {name: stats.to_dict() for name, stats in used.items()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the model recipe, normalisation statistics and task facts."""
        checkpoint["rsfm_model_config"] = model_config(self.model)
        if self.band_stats is not None:
            checkpoint["rsfm_band_stats"] = self.band_stats
        checkpoint["rsfm_task"] = {"task": self.task_name, "scale": self.model.scale}
        self.save_ema(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the statistics and take the EMA weights out of the state dict."""
        self.band_stats = checkpoint.get("rsfm_band_stats", self.band_stats)
        self.load_ema(checkpoint)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers should not decay."""
        return {f"model.{name}" for name in self.model.no_weight_decay()}


__all__ = ["RefSRTask"]

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
from rsfm.hub.checkpoint_keys import TaskFacts
from rsfm.models.crefdiff import CRefDiffModel
from rsfm.models.registry import create_model
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
        lr: Absolute learning rate (this task's default: 1e-3).
        weight_decay: Decoupled weight decay (this task's default: none).
        warmup_epochs: Linear warm-up length in epochs (this task's default: 0.1).
        **kwargs: Further :class:`~rsfm.tasks.base.BaseTask` (optimiser) arguments.
    """

    task_kind = "super-resolution"
    output_kind = "image"

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
        lr: float | None = 1e-3,
        weight_decay: float = 0.0,
        warmup_epochs: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs)
        network = create_model(model, **(model_args or {}))
        if not isinstance(network, CRefDiffModel):
            raise TypeError(f"{model!r} is not a CRefDiffModel")
        self.model = network
        self.use_reference = use_reference and network.uses_reference
        self.val_steps, self.val_start = val_steps, val_start
        self.val_start_fraction = val_start_fraction
        self.max_timestep_fraction, self.snr_gamma = max_timestep_fraction, snr_gamma
        self.init_ema(ema_decay, ema_warmup)

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

    def task_facts(self) -> TaskFacts:
        """Super-resolution facts plus the model's scale factor."""
        facts = super().task_facts()
        facts.extra["scale"] = self.model.scale
        return facts

    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers should not decay."""
        return {f"model.{name}" for name in self.model.no_weight_decay()}


__all__ = ["RefSRTask"]

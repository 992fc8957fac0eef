"""Spectrum-aware masked-autoencoder pretraining (SMARTIES-style) as a LightningModule."""

from __future__ import annotations

from typing import Any

import torch

from rsfm.models.registry import create_model
from rsfm.tasks.base import BaseTask


class MAEPretrainTask(BaseTask):
    """Masked-autoencoder pretraining of a spectrum-aware encoder.

    Batches are sample dicts (``image``, ``wavelengths``, optional ``pair_image`` /
    ``pair_wavelengths`` for cross-sensor token mixup) or a dict of such batches, as a
    ``CombinedLoader`` yields when single-sensor and paired loaders are mixed.

    Args:
        model: Registered model name (see ``rsfm.models.list_models``).
        model_args: Overrides of the registered variant's init args.
        mask_ratio: Fraction of patch tokens hidden from the encoder.
        mixup_ratio: Fraction of token positions swapped between paired sensors.
        base_lr: Base learning rate of the scaling rule (MAE's 1.5e-4).
        betas: Adam betas (MAE's 0.9, 0.95).
        **kwargs: Further :class:`~rsfm.tasks.base.BaseTask` (optimiser) arguments.
    """

    task_kind = "masked-image-modeling"
    output_kind = "embeddings"
    stage_kind = "pretraining"

    def __init__(
        self,
        model: str = "smarties_tiny",
        model_args: dict[str, Any] | None = None,
        mask_ratio: float = 0.75,
        mixup_ratio: float = 0.5,
        base_lr: float = 1.5e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        **kwargs: Any,
    ) -> None:
        super().__init__(base_lr=base_lr, betas=betas, **kwargs)
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        if not 0.0 <= mixup_ratio <= 1.0:
            raise ValueError(f"mixup_ratio must be in [0, 1], got {mixup_ratio}")
        self.model_name = model
        self.mask_ratio = mask_ratio
        overrides = dict(model_args or {})
        overrides.setdefault("mask_ratio", mask_ratio)
        overrides.setdefault("mixup_ratio", mixup_ratio)
        self.model = create_model(model, **overrides)

    @staticmethod
    def _parts(batch: dict[str, Any]) -> list[dict[str, Any]]:
        """The sub-batches holding samples: one batch, or each loader's of a CombinedLoader."""
        if "n_skipped" in batch or "image" in batch:
            return [batch] if "image" in batch else []  # only skipped windows: nothing to use
        return [b for b in batch.values() if isinstance(b, dict) and "image" in b]

    def _loss(
        self, batch: dict[str, Any], generator: torch.Generator | None = None
    ) -> torch.Tensor | None:
        losses = [
            self.model(
                part["image"],
                part["wavelengths"],
                pair_image=part.get("pair_image"),
                pair_wavelengths=part.get("pair_wavelengths"),
                generator=generator,
            )["loss"]
            for part in self._parts(batch)
        ]
        return torch.stack(losses).mean() if losses else None

    @staticmethod
    def _skipped(batch: dict[str, Any]) -> int:
        if "n_skipped" in batch:
            return int(batch["n_skipped"])
        return sum(int(b.get("n_skipped", 0)) for b in batch.values() if isinstance(b, dict))

    def _batch_size(self, batch: dict[str, Any]) -> int:
        return sum(int(p["image"].shape[0]) for p in self._parts(batch))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One MAE step; logs ``train/loss`` and the count of skipped all-nodata windows."""
        self.log_skipped_windows(self._skipped(batch))
        loss = self._loss(batch)
        if loss is None:  # every window of the batch was nodata: nothing to learn from
            return None
        self.log("train/loss", loss, prog_bar=True, batch_size=self._batch_size(batch))
        return loss

    def _eval_step(self, batch: dict[str, Any], stage: str, seed: int) -> torch.Tensor | None:
        # A fixed masking generator per batch, so epochs compare like with like. Losses of the
        # single-sensor and paired loaders aggregate into one metric.
        generator = torch.Generator(device=self.device).manual_seed(seed)
        loss = self._loss(batch, generator)
        if loss is None:
            return None
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=stage == "val",
            sync_dist=True,
            batch_size=self._batch_size(batch),
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Masked-reconstruction loss on held-out windows."""
        return self._eval_step(batch, "val", 1234 + batch_idx)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Same as validation, logged under ``test/``."""
        return self._eval_step(batch, "test", 4321 + batch_idx)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Pooled encoder embeddings ``[B, D]`` per sample (no masking)."""
        part = self._parts(batch)[0]
        embedding = self.model.encoder.forward_pooled(part["image"], part["wavelengths"])
        return {
            "embedding": embedding,
            "sensor": part.get("sensor"),
            "bounds": part.get("bounds"),
            "crs": part.get("crs"),
        }

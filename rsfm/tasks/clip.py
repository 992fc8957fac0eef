"""Contrastive image-text training (CLIP-RS-style) with open_clip's losses, as a LightningModule.

Batches are caption sample dicts (:class:`rsfm.data.datamodules.captions.CaptionDataModule`):
``image``
[B,C,H,W], ``wavelengths`` [B,C], ``caption`` list[str], optional ``label`` list[str] and
``index`` (image id). Validation and test report the contrastive loss, image<->text retrieval
R@1/5/10 with the mean recall, and zero-shot classification accuracy when batches carry labels.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from open_clip import ClipLoss
from open_clip.loss import SigLipLoss

from rsfm.evaluation.retrieval import (
    DEFAULT_KS,
    group_texts_by_image,
    retrieval_metrics,
    zero_shot_accuracy,
)
from rsfm.hub.checkpoint_keys import MODEL_CONFIG, TaskFacts
from rsfm.models.clip import RSCLIP
from rsfm.models.registry import create_model
from rsfm.tasks.base import BaseTask

LOSSES = ("clip", "siglip")
MAX_LOGIT_SCALE = math.log(100.0)  # open_clip clamps the learned temperature at 100


class CLIPTask(BaseTask):
    """Train an :class:`~rsfm.models.clip.RSCLIP` on image-caption pairs.

    Args:
        model: Registered CLIP variant (``clip_rs_tiny``, ``clip_rs_s2_tiny``,
            ``clip_rs_vit_b16`` ...).
        model_args: Overrides of the variant's init args (``arch``, ``spectral_tower``,
            ``pretrained`` ...).
        loss: ``clip`` (open_clip ``ClipLoss``, softmax InfoNCE) or ``siglip`` (``SigLipLoss``;
            the model gets a logit bias, -10, and temperature log 10 unless given).
        local_loss: ClipLoss across GPUs: local image/text rows against all (saves memory).
        gather_with_grad: ClipLoss across GPUs: gather features with gradients.
        class_names: Zero-shot classes (default: the model's, else the labels of the data).
        templates: Zero-shot prompt templates (default: the model's).
        retrieval_ks: Recall cut-offs.
        export_dir: Folder for an open_clip export of the trained model at the end of ``fit``
            (default ``<log dir>/open_clip``); ``""`` disables it (spectral towers skip it).
        base_lr: Base learning rate of the scaling rule (this task's default: 5e-4).
        weight_decay: Decoupled weight decay (open_clip default 0.2).
        betas: Adam betas (open_clip default 0.9, 0.98).
        **kwargs: Further :class:`~rsfm.tasks.base.BaseTask` (optimiser) arguments.
    """

    task_kind = "image-text-contrastive"
    output_kind = "embeddings"
    classes_from_data = False  # zero-shot classes: its own, the model's, else the labels seen

    def __init__(
        self,
        model: str = "clip_rs_tiny",
        model_args: dict[str, Any] | None = None,
        loss: str = "clip",
        local_loss: bool = False,
        gather_with_grad: bool = True,
        class_names: list[str] | None = None,
        templates: list[str] | None = None,
        retrieval_ks: Sequence[int] = DEFAULT_KS,
        export_dir: str | None = None,
        base_lr: float = 5e-4,
        weight_decay: float = 0.2,
        betas: tuple[float, float] = (0.9, 0.98),
        **kwargs: Any,
    ) -> None:
        super().__init__(base_lr=base_lr, weight_decay=weight_decay, betas=betas, **kwargs)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        overrides = dict(model_args or {})
        if loss == "siglip":  # SigLIP's initialisation (Zhai et al. 2023): t' = log 10, b = -10
            overrides.setdefault("init_logit_bias", -10.0)
            overrides.setdefault("init_logit_scale", math.log(10.0))
        network = create_model(model, **overrides)
        if not isinstance(network, RSCLIP):
            raise TypeError(f"{model!r} is not a CLIP model (RSCLIP)")
        self.model = network
        self.loss_name = loss
        self.local_loss = local_loss
        self.gather_with_grad = gather_with_grad
        self.class_names = list(class_names) if class_names else None
        self.templates = list(templates) if templates else None
        self.retrieval_ks = tuple(int(k) for k in retrieval_ks)
        self.export_dir = export_dir
        self.loss_fn: torch.nn.Module = self._build_loss(rank=0, world_size=1)
        self._outputs: dict[str, list[torch.Tensor]] = {}
        self._labels: list[str] = []

    # ------------------------------------------------------------------ loss
    def _build_loss(self, rank: int, world_size: int) -> torch.nn.Module:
        if self.loss_name == "siglip":
            return SigLipLoss(rank=rank, world_size=world_size)
        return ClipLoss(
            local_loss=self.local_loss,
            gather_with_grad=self.gather_with_grad,
            cache_labels=True,
            rank=rank,
            world_size=world_size,
        )

    def setup(self, stage: str) -> None:
        """Rebuild the loss for this process's rank; BaseTask takes the data's statistics."""
        trainer = self._trainer
        if trainer is not None:
            self.loss_fn = self._build_loss(trainer.global_rank, trainer.world_size)
        super().setup(stage)

    def contrastive_loss(self, outputs: dict[str, Any]) -> torch.Tensor:
        """open_clip loss of :meth:`RSCLIP.forward_contrastive` outputs."""
        return self.loss_fn(
            outputs["image_features"],
            outputs["text_features"],
            outputs["logit_scale"],
            outputs["logit_bias"],
        )

    def _encode(self, batch: dict[str, Any]) -> dict[str, Any]:
        captions = batch["caption"]
        if isinstance(captions, str):
            captions = [captions]
        return self.model.forward_contrastive(batch["image"], captions, batch.get("wavelengths"))

    # ------------------------------------------------------------------ steps
    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised image embeddings [B, E]."""
        return self.model.encode_image(image, wavelengths, normalize=True)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """One contrastive step; logs ``train/loss`` and ``train/logit_scale``."""
        if "image" not in batch:
            return None
        outputs = self._encode(batch)
        loss = self.contrastive_loss(outputs)
        size = batch["image"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/logit_scale", outputs["logit_scale"].detach(), batch_size=size)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Clamp the learned temperature to [0, log 100] after each step, as open_clip does."""
        with torch.no_grad():
            self.model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)

    def _eval_step(self, batch: dict[str, Any], batch_idx: int, stage: str) -> torch.Tensor | None:
        if "image" not in batch:
            return None
        outputs = self._encode(batch)
        loss = self.contrastive_loss(outputs)
        size = batch["image"].shape[0]
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", sync_dist=True, batch_size=size)
        ids = batch.get("index")
        if ids is None:  # no image ids: every pair is its own image
            offset = sum(t.numel() for t in self._outputs.get("ids", []))
            ids = torch.arange(offset, offset + size)
        ids = torch.as_tensor(ids).long().reshape(-1)
        self._append("image", outputs["image_features"].detach())
        self._append("text", outputs["text_features"].detach())
        self._append("ids", ids.to(self.device))
        labels = batch.get("label")
        if labels is not None:
            self._labels.extend(str(label) for label in labels)
        return loss

    def _append(self, key: str, value: torch.Tensor) -> None:
        self._outputs.setdefault(key, []).append(value)

    def on_validation_epoch_start(self) -> None:
        """Reset the collected features."""
        self._outputs, self._labels = {}, []

    on_test_epoch_start = on_validation_epoch_start

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Contrastive loss; features kept for retrieval and zero-shot metrics."""
        return self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """Same as validation, logged under ``test/``."""
        return self._eval_step(batch, batch_idx, "test")

    def on_validation_epoch_end(self) -> None:
        """Log retrieval R@K, mean recall and zero-shot accuracy over the whole epoch."""
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Same as validation, under ``test/``."""
        self._log_epoch_metrics("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Normalised image embeddings [B, E] with the samples' ids."""
        embedding = self(batch["image"], batch.get("wavelengths"))
        return {"embedding": embedding, "index": batch.get("index"), "sensor": batch.get("sensor")}

    # ------------------------------------------------------------------ epoch metrics
    def _gathered(self) -> tuple[dict[str, torch.Tensor], list[str]]:
        """This epoch's features (all processes) and labels."""
        local = {k: torch.cat(v) for k, v in self._outputs.items()}
        labels = list(getattr(self, "_labels", []))
        if self.trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            # Ranks may hold different counts: object gathering avoids padding logic.
            gathered: list[Any] = [None] * self.trainer.world_size
            cpu = {k: v.cpu() for k, v in local.items()}
            dist.all_gather_object(gathered, (cpu, labels))
            local = {k: torch.cat([g[0][k] for g in gathered]) for k in cpu}
            labels = [label for g in gathered for label in g[1]]
        return local, labels

    def zero_shot_classes(self, labels: Sequence[str]) -> list[str]:
        """Classes for zero-shot evaluation: the task's, the model's if they cover the labels,
        else the sorted labels of the data."""
        if self.class_names:
            return self.class_names
        seen = sorted(set(labels))
        model_classes = self.model.class_names or []
        if model_classes and set(seen) <= set(model_classes):
            return list(model_classes)
        return seen

    @torch.no_grad()
    def evaluate_features(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        image_ids: torch.Tensor,
        labels: Sequence[str] = (),
    ) -> dict[str, float]:
        """Retrieval (images deduplicated by id) and zero-shot metrics of collected features."""
        first, text_to_image = group_texts_by_image(image_ids)
        images = image_features[first]
        metrics = retrieval_metrics(images, text_features, text_to_image, self.retrieval_ks)
        if labels:
            classes = self.zero_shot_classes(labels)
            index = {name: i for i, name in enumerate(classes)}
            targets = torch.tensor([index.get(label, -1) for label in labels])
            known = targets >= 0
            if bool(known.any()) and len(classes) > 1:
                embeddings = self.model.class_embeddings(classes, self.templates)
                metrics["zero_shot_accuracy"] = zero_shot_accuracy(
                    image_features[known.to(image_features.device)],
                    embeddings,
                    targets[known],
                )
        return metrics

    def _log_epoch_metrics(self, stage: str) -> None:
        if not self._outputs or self.trainer.sanity_checking:
            return
        outputs, labels = self._gathered()
        metrics = self.evaluate_features(outputs["image"], outputs["text"], outputs["ids"], labels)
        for name, value in metrics.items():  # every rank gathered the same features
            self.log(f"{stage}/{name}", value, prog_bar=name == "mean_recall")
        self._outputs, self._labels = {}, []

    # ------------------------------------------------------------------ checkpoints / export
    def no_weight_decay(self) -> set[str]:
        """Parameter names optimisers should not decay."""
        return {f"model.{name}" for name in self.model.no_weight_decay()}

    def task_facts(self) -> TaskFacts:
        """Contrastive facts: zero-shot classes, the loss and the open_clip architecture."""
        facts = super().task_facts()
        names = self.class_names or self.model.class_names
        facts.class_names = list(names) if names else None
        facts.extra["loss"] = self.loss_name
        facts.extra["open_clip_arch"] = None if self.model.spectral else self.model.arch_name
        return facts

    def on_fit_end(self) -> None:
        """Export the trained model in open_clip's own format (rank 0, open_clip towers)."""
        if self.export_dir == "" or self.model.spectral or not self.trainer.is_global_zero:
            return
        folder = self.export_dir or os.path.join(
            self.trainer.log_dir or self.trainer.default_root_dir, "open_clip"
        )
        self.model.export_open_clip(folder)


def export_open_clip_checkpoint(
    ckpt_path: str | os.PathLike[str], directory: str | os.PathLike[str]
) -> Path:
    """Convert a :class:`CLIPTask` Lightning checkpoint into a folder open_clip loads.

    Args:
        ckpt_path: ``.ckpt`` written by CLIPTask (read with ``weights_only=True``).
        directory: Output folder (see :meth:`RSCLIP.export_open_clip`).

    Returns:
        The ``open_clip_model.safetensors`` path.
    """
    from rsfm.models.registry import model_from_config

    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    config = checkpoint.get(MODEL_CONFIG)
    if config is None:
        raise ValueError(f"{ckpt_path}: no {MODEL_CONFIG} (not written by an rsfm task)")
    model = model_from_config(config)
    if not isinstance(model, RSCLIP):
        raise ValueError(f"{ckpt_path}: holds {config['class_path']}, not an RSCLIP model")
    prefix = "model."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    model.load_state_dict(state, strict=True)
    return model.export_open_clip(directory)

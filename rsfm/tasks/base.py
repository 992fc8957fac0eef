"""Shared LightningModule base: optimiser and schedule, hyperparameters, the checkpoint contract.

:class:`BaseTask` is the one place that writes and reads the rsfm keys of a Lightning checkpoint
(:mod:`rsfm.hub.checkpoint_keys`): the network's registry config, the normalisation statistics
and the task's facts (:class:`~rsfm.hub.checkpoint_keys.TaskFacts`, from :meth:`task_facts`).
Band statistics and what the data fed the model come from the datamodule through one typed
contract (:class:`~rsfm.data.datamodules.base.BaseDataModule`), in :meth:`BaseTask.setup`.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from timm.optim import create_optimizer_v2

from rsfm.data.datamodules.base import BaseDataModule, DataFacts
from rsfm.hub.checkpoint_keys import (
    BAND_STATS,
    MODEL_CONFIG,
    STAGES,
    TASK,
    TaskFacts,
    TrainingStage,
)
from rsfm.models.registry import model_config, model_from_config


class BaseTask(pl.LightningModule):
    """Base for every rsfm training objective.

    Subclasses build their network as ``self.model`` in ``__init__`` (or, when its size depends
    on the data, in Lightning's ``configure_model``) and implement the steps. They take only
    their own arguments and pass the rest on by keyword (``**kwargs``): jsonargparse follows
    them, and every resolved argument of the whole chain is recorded in ``hparams``.

    The optimiser is timm's ``create_optimizer_v2`` (weight decay skipped for norms, biases and
    1-D params); the schedule is linear warm-up then cosine decay, stepped every optimiser step.

    Per-task hooks: :attr:`task_kind`, :attr:`output_kind` and :attr:`stage_kind` (class
    attributes), :meth:`task_facts` (extend it for ignore index, scale ...) and
    :meth:`restore_task_facts` (what a loaded checkpoint gives back).

    Args:
        optimizer: timm optimiser name (``adamw``, ``lamb``, ``sgd`` ...).
        lr: Absolute learning rate. When None, ``base_lr * effective_batch / 256`` (MAE rule),
            with effective batch = batch size x gradient accumulation x world size.
        base_lr: Base learning rate for the scaling rule.
        weight_decay: Decoupled weight decay.
        betas: Adam betas.
        warmup_epochs: Linear warm-up length in epochs (fractions allowed).
        min_lr: Learning rate at the end of the cosine decay.
        scheduler: ``cosine`` (warm-up + cosine) or ``constant`` (warm-up then flat).
    """

    #: Task kind recorded in checkpoints and cards (see :class:`TaskFacts`).
    task_kind: ClassVar[str] = "feature-extraction"
    #: What tiled inference writes by default: classes, values, embeddings, image or quality.
    output_kind: ClassVar[str | None] = None
    #: Stage this task's own training is: ``pretraining`` (no labels) or ``fine-tuning``.
    stage_kind: ClassVar[str] = "pretraining"
    #: Whether the datamodule's class names become the task's (False: the task has its own).
    classes_from_data: ClassVar[bool] = True

    def __init__(
        self,
        optimizer: str = "adamw",
        lr: float | None = None,
        base_lr: float = 1e-3,
        weight_decay: float = 0.05,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_epochs: float = 1.0,
        min_lr: float = 0.0,
        scheduler: str = "cosine",
    ) -> None:
        super().__init__()
        if scheduler not in {"cosine", "constant"}:
            raise ValueError(f"scheduler must be 'cosine' or 'constant', got {scheduler!r}")
        self._record_hyperparameters()
        self.optimizer_name = optimizer
        self.lr = lr
        self.base_lr = base_lr
        self.weight_decay = weight_decay
        self.betas = tuple(betas)
        self.warmup_epochs = warmup_epochs
        self.min_lr = min_lr
        self.scheduler_name = scheduler
        self.band_stats: dict[str, dict[str, Any]] | None = None
        self.class_names: list[str] | None = None
        self.data_facts: DataFacts | None = None
        self.source_stage: TrainingStage | None = None  # where pretrained weights came from
        self._restored_facts: TaskFacts | None = None

    # ------------------------------------------------------------------ hyperparameters
    def _record_hyperparameters(self) -> None:
        """Record every resolved argument of the ``__init__`` chain (this frame and its callers).

        Lightning collects the locals of every ``__init__`` still running, so defaults of this
        class and of intermediate ones are recorded although subclasses pass only ``**kwargs``;
        arguments a subclass fixes itself (``num_outputs=num_classes``) are dropped, keeping the
        names jsonargparse resolves for the class (those ``cls(**hparams)`` accepts).
        """
        self.save_hyperparameters(frame=_caller_frame())
        names = resolved_parameter_names(type(self))
        if names is not None:
            for key in [k for k in self.hparams if k not in names and not k.startswith("_")]:
                self.hparams.pop(key)

    # ------------------------------------------------------------------ data contract
    def setup(self, stage: str) -> None:
        """Hand own statistics to the datamodule; record the ones it uses and what it feeds."""
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if not isinstance(datamodule, BaseDataModule):
            return
        if self.band_stats:
            datamodule.use_band_stats(self.band_stats)
        own = {name: stats.to_dict() for name, stats in datamodule.band_stats.items()}
        if own:
            self.band_stats = {**(self.band_stats or {}), **own}
        self.data_facts = datamodule.data_facts()
        if self.classes_from_data and self.data_facts.class_names:
            self.class_names = list(self.data_facts.class_names)

    # ------------------------------------------------------------------ task facts
    def task_facts(self) -> TaskFacts:
        """The facts of this task (checkpoint key ``rsfm_task``, then the hub card).

        Subclasses extend the result (ignore index, super-resolution scale ...).
        """
        restored = self._restored_facts
        input_size = self.data_facts.input_size if self.data_facts else None
        return TaskFacts(
            task=self.task_kind,
            output=self.output_kind,
            class_names=list(self.class_names) if self.class_names else None,
            input_size=input_size or (restored.input_size if restored else None),
            patch_size=model_patch_size(getattr(self, "model", None)),
            stages=self.training_stages(),
        )

    def training_stages(self) -> list[TrainingStage]:
        """Stages in order: the weights' source (pretraining), then this task's own training."""
        stages = {s.stage: s for s in (self._restored_facts.stages if self._restored_facts else [])}
        if self.source_stage is not None:
            stages[self.source_stage.stage] = self.source_stage
        if self.data_facts is not None:
            facts = self.data_facts
            stages[self.stage_kind] = TrainingStage(
                self.stage_kind,
                sensors={k: list(v) for k, v in facts.sensors.items()},
                bad_bands={k: list(v) for k, v in facts.bad_bands.items()},
                datasets=[dict(d) for d in facts.datasets],
            )
        return [stages[name] for name in STAGES if name in stages]

    def restore_task_facts(self, facts: TaskFacts) -> None:
        """Take back what a checkpoint recorded (class names, stages); extend for more."""
        self._restored_facts = facts
        if facts.class_names and self.classes_from_data:
            self.class_names = list(facts.class_names)

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the network's rebuild recipe, normalisation statistics and task facts."""
        checkpoint[MODEL_CONFIG] = model_config(self.model)
        if self.band_stats is not None:
            checkpoint[BAND_STATS] = self.band_stats
        checkpoint[TASK] = self.task_facts().to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore what :meth:`on_save_checkpoint` stored (a lazily built network first)."""
        if getattr(self, "model", None) is None and MODEL_CONFIG in checkpoint:
            self.model = model_from_config(checkpoint[MODEL_CONFIG])
        self.band_stats = checkpoint.get(BAND_STATS, self.band_stats)
        facts = TaskFacts.from_dict(checkpoint.get(TASK))
        if facts is not None:
            self.restore_task_facts(facts)

    # ------------------------------------------------------------------ logging
    def log_skipped_windows(self, count: float) -> None:
        """Log ``train/skipped_windows``: all-nodata windows the data left out (epoch sum)."""
        self.log(
            "train/skipped_windows",
            float(count),
            reduce_fx="sum",
            on_step=False,
            on_epoch=True,
            batch_size=1,
        )

    # ------------------------------------------------------------------ optimiser
    def effective_batch_size(self) -> int:
        """Samples per optimiser step across all processes."""
        trainer = self.trainer
        datamodule = getattr(trainer, "datamodule", None)
        batch = int(getattr(datamodule, "batch_size", 1) or 1)
        return batch * int(trainer.accumulate_grad_batches) * int(trainer.world_size)

    def resolved_lr(self) -> float:
        """The learning rate actually used (explicit ``lr`` or the scaling rule)."""
        if self.lr is not None:
            return float(self.lr)
        return self.base_lr * self.effective_batch_size() / 256.0

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (by default) with per-step warm-up + cosine decay."""
        lr = self.resolved_lr()
        kwargs: dict[str, Any] = {}
        if self.optimizer_name.lower() in {"adam", "adamw", "lamb", "nadamw", "adan"}:
            kwargs["betas"] = self.betas
        optimizer = create_optimizer_v2(
            self, opt=self.optimizer_name, lr=lr, weight_decay=self.weight_decay, **kwargs
        )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        steps_per_epoch = max(1, total // max(1, int(self.trainer.max_epochs or 1)))
        warmup = min(total - 1, int(round(self.warmup_epochs * steps_per_epoch)))
        floor = self.min_lr / lr if lr > 0 else 0.0
        cosine = self.scheduler_name == "cosine"

        def lr_factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if not cosine:
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

        # LambdaLR: torch's SequentialLR cannot express a cosine floor relative to a scaled LR.
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1},
        }


def _caller_frame() -> Any:
    """The frame of the function that called the caller (``BaseTask.__init__``)."""
    import inspect

    frame = inspect.currentframe()
    return frame.f_back.f_back if frame is not None and frame.f_back is not None else None


@functools.cache
def resolved_parameter_names(cls: type) -> frozenset[str] | None:
    """Argument names jsonargparse resolves for ``cls`` (``**kwargs`` followed into parents).

    The same names LightningCLI records, so hparams built in Python and from a YAML agree.
    None when jsonargparse cannot read the signature (then nothing is filtered).
    """
    from jsonargparse import ArgumentParser

    try:
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "task", fail_untyped=False)
        return frozenset(parser.get_defaults().as_dict()["task"])
    except Exception:  # noqa: BLE001 - an unreadable signature only disables the filter
        return None


def model_patch_size(model: Any) -> int | None:
    """Patch (token) side of a network or its encoder, when it has one."""
    for part in (model, getattr(model, "encoder", None)):
        size = getattr(part, "patch_size", None)
        if isinstance(size, int):
            return size
        if isinstance(size, tuple | list) and size and isinstance(size[0], int):
            return int(size[0])
    return None


def pretraining_stage(
    weights: str, band_stats: dict[str, dict[str, Any]] | None
) -> TrainingStage | None:
    """The ``pretraining`` stage of the source of pretrained encoder weights, when known.

    A Lightning checkpoint gives its recorded stage; a hub entry its card's; otherwise (older
    sources) the sensors and bands of the statistics that came with the weights.

    Args:
        weights: Checkpoint path, ``.safetensors`` file, hub name or entry folder.
        band_stats: Statistics returned with the weights (``{sensor: BandStats dict}``).
    """
    stage: TrainingStage | None = None
    path = Path(weights).expanduser()
    try:
        if path.is_file() and path.suffix != ".safetensors":
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            facts = TaskFacts.from_dict(checkpoint.get(TASK))
            stage = facts.stage("pretraining") if facts else None
        elif not path.is_file():
            stage = _hub_stage(weights)
    except Exception:  # noqa: BLE001 - the weights loaded already: facts are best effort
        stage = None
    if stage is None and band_stats:
        sensors = {k: list(v.get("band_names") or []) for k, v in band_stats.items()}
        stage = TrainingStage("pretraining", sensors=sensors)
    return stage


def _hub_stage(name: str) -> TrainingStage | None:
    """The pretraining stage of a hub entry's typed card (its sensors for older cards)."""
    from rsfm.hub import load_card

    card = load_card(name)
    recorded = card.stage("pretraining") if hasattr(card, "stage") else None
    tables = recorded.sensors if recorded is not None else getattr(card, "sensors", None)
    if not tables:
        return None
    return TrainingStage(
        "pretraining",
        sensors={k: list(v.band_names) for k, v in tables.items()},
        bad_bands=dict(recorded.bad_bands) if recorded is not None else {},
        datasets=list(recorded.datasets) if recorded is not None else [],
    )

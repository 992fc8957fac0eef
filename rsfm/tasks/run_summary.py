"""The closing lines of ``rsfm fit``: where the checkpoints, config and logs went, what next."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

CONFIG_NAME = "config.yaml"


def _metric_lines(trainer: pl.Trainer) -> list[str]:
    metrics = {}
    for key, value in sorted(trainer.callback_metrics.items()):
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number) and not key.endswith("_step"):
            metrics[key.removesuffix("_epoch")] = number
    return [f"  {key}: {value:.4g}" for key, value in metrics.items()]


def _run_folder(trainer: pl.Trainer) -> Path:
    folders = [Path(c.dirpath).parent for c in trainer.checkpoint_callbacks if c.dirpath]
    return folders[0] if folders else Path(trainer.default_root_dir)


def _push_hint(trainer: pl.Trainer, run: Path) -> str:
    """The ``rsfm hub push`` command that publishes this run."""
    module = trainer.lightning_module
    extra = ""
    if type(module).__name__ == "MAEPretrainTask":
        extra = " --component encoder"
    elif getattr(module, "ema", None) is not None:
        extra = " --ema"
    name = run.name.replace("_", "-")
    return f"rsfm hub push {run} --name {name}{extra}"


def run_summary(trainer: pl.Trainer, config_path: Path | None = None) -> str:
    """Best and last checkpoints, final metrics, config, logs and the push command.

    Args:
        trainer: The trainer after ``fit``.
        config_path: The resolved config LightningCLI saved (default: ``<log_dir>/config.yaml``).
    """
    lines = [
        f"rsfm fit finished: {trainer.global_step} optimiser steps, {trainer.current_epoch} epochs"
    ]
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        if callback.best_model_path:
            score = callback.best_model_score
            shown = f" ({callback.monitor} {float(score):.4g})" if score is not None else ""
            lines.append(f"best checkpoint: {callback.best_model_path}{shown}")
        if callback.last_model_path:
            lines.append(f"last checkpoint: {callback.last_model_path}")
    metrics = _metric_lines(trainer)
    if metrics:
        lines += ["final metrics:", *metrics]
    config = config_path or Path(trainer.log_dir or trainer.default_root_dir) / CONFIG_NAME
    if config.is_file():
        lines.append(f"resolved config: {config}")
    for logger in trainer.loggers:
        folder = getattr(logger, "log_dir", None)
        if folder:
            lines.append(f"logs ({type(logger).__name__}): {folder}")
    reconstructions = [
        c.last_path for c in trainer.callbacks if getattr(c, "last_path", None) is not None
    ]
    if reconstructions:
        lines.append(f"reconstructions: {reconstructions[0].parent} (latest.png)")
    if trainer.checkpoint_callbacks:
        lines.append(f"publish: {_push_hint(trainer, _run_folder(trainer))}")
    return "\n".join(lines)

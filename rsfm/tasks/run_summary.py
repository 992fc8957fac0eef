"""The run layout's config file and the closing lines of ``rsfm fit``: where the checkpoints,
config and logs went, and the command that publishes the run.

Layout (the same for every family, see :mod:`rsfm.tasks.checkpoint_io`): the resolved config is
``<run root>/config.yaml``, checkpoints ``<run root>/checkpoints/``, where the run root is
``trainer.default_root_dir`` (``runs/<name>`` in the shipped configs).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback

from rsfm.tasks.checkpoint_io import StepCheckpoint

CONFIG_NAME = "config.yaml"


def config_path(trainer: pl.Trainer, stage: str = "fit") -> Path:
    """``<run root>/config.yaml`` for ``fit``; ``config.<stage>.yaml`` for the other commands
    (a ``predict`` beside a run never replaces the config that trained it)."""
    name = CONFIG_NAME if stage == "fit" else f"config.{stage}.yaml"
    return Path(trainer.default_root_dir) / name


class RunConfigCallback(SaveConfigCallback):
    """Saves the resolved config at the run root (``trainer.default_root_dir``), not under the
    first logger's ``version_N/`` folder as LightningCLI does.

    ``rsfm fit`` writes ``<run root>/config.yaml`` (replaced by a resumed fit, which parses the
    same config again); ``validate|test|predict`` write ``config.<command>.yaml`` beside it.
    """

    def __init__(
        self,
        parser: Any,
        config: Any,
        config_filename: str = CONFIG_NAME,
        overwrite: bool = True,
        multifile: bool = False,
        save_to_log_dir: bool = False,
    ) -> None:
        super().__init__(
            parser,
            config,
            config_filename=config_filename,
            overwrite=overwrite,
            multifile=multifile,
            save_to_log_dir=False,  # save_config below writes it (rank zero only)
        )

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Write the config to :func:`config_path` (rank zero)."""
        path = config_path(trainer, stage)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.parser.save(
            self.config, str(path), skip_none=False, overwrite=True, multifile=self.multifile
        )


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


def _main_checkpoint(trainer: pl.Trainer) -> ModelCheckpoint | None:
    """The first ModelCheckpoint that is not a :class:`StepCheckpoint` (best and epoch ends)."""
    found = [
        c
        for c in trainer.checkpoint_callbacks
        if isinstance(c, ModelCheckpoint) and not isinstance(c, StepCheckpoint)
    ]
    return found[0] if found else None


def _run_folder(trainer: pl.Trainer) -> Path:
    """The folder ``rsfm hub push`` takes: the one holding ``checkpoints/`` (the run root)."""
    main = _main_checkpoint(trainer)
    if main is not None and main.dirpath:
        return Path(main.dirpath).parent
    return Path(trainer.default_root_dir)


def _push_hint(trainer: pl.Trainer, run: Path) -> str:
    """The ``rsfm hub push`` command that publishes this run (its best checkpoint if any)."""
    module = trainer.lightning_module
    extra = ""
    main = _main_checkpoint(trainer)
    if main is not None and main.monitor is not None and main.best_model_path:
        extra += " --best"
    if type(module).__name__ == "MAEPretrainTask":
        extra += " --component encoder"
    elif getattr(module, "ema", None) is not None:
        extra += " --ema"
    name = run.name.replace("_", "-")
    return f"rsfm hub push {run} --name {name}{extra}"


def run_summary(trainer: pl.Trainer, config: Path | None = None) -> str:
    """Best, last and step checkpoints, final metrics, config, logs and the push command.

    Args:
        trainer: The trainer after ``fit``.
        config: The resolved config LightningCLI saved (default: ``<run root>/config.yaml``).
    """
    lines = [
        f"rsfm fit finished: {trainer.global_step} optimiser steps, {trainer.current_epoch} "
        f"epochs, run folder {_run_folder(trainer)}"
    ]
    for callback in trainer.checkpoint_callbacks:
        if not isinstance(callback, ModelCheckpoint):
            continue
        if isinstance(callback, StepCheckpoint):
            if callback.last_model_path:
                every = callback._every_n_train_steps
                lines.append(f"step checkpoint: {callback.last_model_path} (every {every} steps)")
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
    config = (config or config_path(trainer)).resolve()
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

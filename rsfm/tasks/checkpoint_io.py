"""Checkpoint writing that never leaves a half-written file behind, and where checkpoints go.

Every run writes one layout, whatever its family (``rsfm.cli`` applies it)::

    <run root>/                  trainer.default_root_dir, e.g. runs/<name>
        config.yaml              the resolved config of ``rsfm fit``
        checkpoints/             ModelCheckpoint: best (monitored) and last.ckpt
        checkpoints/steps/       StepCheckpoint: last.ckpt every N optimiser steps
        <logger folders>/        csv/, tensorboard/ ... (metrics, reconstructions)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

CHECKPOINTS = "checkpoints"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary sibling, then renames it over the target.

    Lightning's default writer streams into the final path, so a run killed mid-save leaves a
    truncated ``.ckpt`` that a later ``--ckpt_path`` resume would fail on. A rename within one
    directory is atomic on POSIX filesystems.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        """Save ``checkpoint`` to ``path`` atomically."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                tmp.unlink()


class StepCheckpoint(ModelCheckpoint):
    """``last.ckpt`` every ``every_n_train_steps`` optimiser steps, one file, replaced each time.

    For long runs: a run killed at any moment (``kill -9``, out of memory, a preempted node)
    loses at most ``every_n_train_steps`` steps, not the epoch in progress. Resume with
    ``rsfm fit --config C.yaml --ckpt_path last``: Lightning takes the newest ``last.ckpt`` of
    every checkpoint callback, so the step checkpoint when it is newer than the epoch one. The
    file lands in ``<run root>/checkpoints/steps/`` unless ``dirpath`` says otherwise; it holds
    no monitored score and is never a "best" checkpoint. Written through the trainer's
    checkpoint IO (:class:`AtomicCheckpointIO` in the shipped configs: never half-written).

    Args:
        every_n_train_steps: Optimiser steps between two saves.
        dirpath: Folder of the file (default: ``<trainer.default_root_dir>/checkpoints/steps``).
    """

    SUBFOLDER = "steps"

    def __init__(self, every_n_train_steps: int = 500, dirpath: str | None = None) -> None:
        if every_n_train_steps < 1:
            raise ValueError(f"every_n_train_steps must be >= 1, got {every_n_train_steps}")
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,
            every_n_train_steps=every_n_train_steps,
        )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Put the file under the run root when no ``dirpath`` was given (Python API use)."""
        place_checkpoints(trainer, [self])
        super().setup(trainer, pl_module, stage)


def checkpoint_folder(trainer: pl.Trainer, callback: ModelCheckpoint) -> Path:
    """``<default_root_dir>/checkpoints`` (``.../checkpoints/steps`` for a StepCheckpoint)."""
    folder = Path(trainer.default_root_dir) / CHECKPOINTS
    return folder / callback.SUBFOLDER if isinstance(callback, StepCheckpoint) else folder


def place_checkpoints(trainer: pl.Trainer, callbacks: list[Any] | None = None) -> None:
    """Give every ModelCheckpoint without a ``dirpath`` its folder of the run layout.

    Lightning's default is ``<logger>/version_N/checkpoints`` (a new N each run), so
    ``--ckpt_path last`` of a second run never found the first one's ``last.ckpt``. Called once
    the trainer exists, before ``fit`` resolves ``--ckpt_path``; ``callbacks``: only these.
    """
    for callback in trainer.checkpoint_callbacks if callbacks is None else callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
            folder = str(checkpoint_folder(trainer, callback))
            callback._fs = get_filesystem(folder)
            callback.dirpath = os.path.realpath(os.path.expanduser(folder))

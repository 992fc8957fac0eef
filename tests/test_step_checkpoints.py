"""Step-interval checkpoints: a run killed with SIGKILL mid-epoch resumes at its last step
checkpoint, not at the start of the epoch (issue 13).

The paper-scale recipes carry a :class:`rsfm.tasks.checkpoint_io.StepCheckpoint`
(``<run root>/checkpoints/steps/last.ckpt`` every N optimiser steps); before, their only
checkpoints were written at epoch ends (every 10th epoch for the ViT-B pre-training), so a kill
lost up to that much training.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from rsfm.cli import lightning_main
from rsfm.tasks.checkpoint_io import StepCheckpoint

REPO = Path(__file__).resolve().parents[1]
TWIN = REPO / "tests" / "conf" / "smarties_tiny.yaml"
EVERY = 3  # optimiser steps between two step checkpoints
PER_EPOCH = 10  # optimiser steps per epoch of the run below (80 samples, batch 8)


def _config(tmp_path: Path) -> Path:
    """The MAE twin with 10 steps an epoch, many epochs and a StepCheckpoint every 3 steps."""
    config = yaml.safe_load(TWIN.read_text(encoding="utf-8"))
    config["trainer"].update(max_epochs=100, default_root_dir=str(tmp_path / "run"))
    config["trainer"]["callbacks"] = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"save_last": True},
        },
        {
            "class_path": "rsfm.tasks.checkpoint_io.StepCheckpoint",
            "init_args": {"every_n_train_steps": EVERY},
        },
    ]
    config["data"]["init_args"].update(samples_per_epoch=8 * PER_EPOCH, val_samples=8)
    path = tmp_path / "steps.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


class _Start(Callback):
    """Records the optimiser step training (re)starts at."""

    def __init__(self) -> None:
        self.started_at: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:  # noqa: ANN001 - Lightning hook
        self.started_at = trainer.global_step


def test_sigkill_mid_epoch_resumes_at_the_last_step_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path)
    steps = tmp_path / "run" / "checkpoints" / "steps" / "last.ckpt"
    epoch_last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(
        [sys.executable, "-m", "rsfm.cli", "fit", "--config", str(config)],
        cwd=tmp_path,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:  # kill -9 once a step checkpoint past the first epoch end and inside epoch 1 exists
        deadline, seen = time.monotonic() + 600, 0.0
        while time.monotonic() < deadline and process.poll() is None:
            if steps.is_file() and steps.stat().st_mtime != seen:
                seen = steps.stat().st_mtime
                if epoch_last.is_file() and _step(steps) > PER_EPOCH:
                    break
            time.sleep(0.02)
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL

    killed_at = _step(steps)
    assert killed_at % EVERY == 0 and killed_at % PER_EPOCH != 0, killed_at  # mid-epoch
    assert _step(epoch_last) == PER_EPOCH  # the epoch-end checkpoint is older

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["rsfm"])
    cli = lightning_main(
        ["--config", str(config), f"--trainer.max_steps={killed_at + 2}"], run=False
    )
    start = _Start()
    cli.trainer.callbacks.append(start)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path="last")  # --ckpt_path last
    assert Path(cli.trainer.ckpt_path).resolve() == steps.resolve()
    assert start.started_at == killed_at  # not PER_EPOCH, where epoch 1 began
    assert cli.trainer.global_step == killed_at + 2


def test_step_checkpoint_keeps_one_file_and_no_best() -> None:
    callback = StepCheckpoint(every_n_train_steps=7)
    assert callback.save_top_k == 0 and callback.save_last and callback.monitor is None
    assert callback._every_n_train_steps == 7 and callback._every_n_epochs == 0
    with pytest.raises(ValueError, match="every_n_train_steps"):
        StepCheckpoint(every_n_train_steps=0)

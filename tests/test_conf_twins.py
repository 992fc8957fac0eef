"""Every ``tests/conf/*.yaml`` twin trains from the command line and writes a usable checkpoint.

The twins are the CPU-sized copies of the shipped configs. Each one runs here through the
``rsfm fit`` code path (:func:`rsfm.cli.lightning_main`, what ``rsfm.cli.main(["fit", ...])``
calls, so the trainer can be inspected) with a few optimiser steps, outputs under a temporary
folder, and is checked for what a user relies on: training finished, the logged loss is finite,
a checkpoint was written whose weights are finite and which carries the model config the hub
needs, and the monitored metric (when a checkpoint callback monitors one) is finite. Family tests
check each twin's own facts; this test makes sure no twin is left unrun.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from rsfm.cli import lightning_main
from rsfm.hub.checkpoint_keys import MODEL_CONFIG

REPO = Path(__file__).resolve().parents[1]
TWINS = sorted((REPO / "tests" / "conf").glob("*.yaml"))
SHARED = "../shared/data"  # twins on real samples name this folder; tests substitute it

# A few optimiser steps per twin, whatever its epochs and sample counts.
SHORT = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
]


def test_every_twin_is_found() -> None:
    assert len(TWINS) >= 15


def _prepare(twin: Path, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Path, dict]:
    """The twin to run (its shared-data folder substituted) and its parsed YAML."""
    text = twin.read_text(encoding="utf-8")
    if SHARED in text:
        shared = request.getfixturevalue("shared_data")  # skips without ../shared/data
        text = text.replace(SHARED, str(shared))
        twin = tmp_path / twin.name
        twin.write_text(text, encoding="utf-8")
    return twin, yaml.safe_load(text)


@pytest.mark.parametrize("twin", TWINS, ids=lambda p: p.stem)
def test_twin_fits_and_writes_a_finite_checkpoint(
    twin: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, written = _prepare(twin, tmp_path, request)
    monkeypatch.chdir(tmp_path)  # loggers and datasets with relative paths write here
    monkeypatch.setattr("sys.argv", ["rsfm"])
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path), *SHORT]
    if written.get("trainer", {}).get("enable_checkpointing") is False:
        args.append("--trainer.enable_checkpointing=true")  # the twin only smoke-runs
    cli = lightning_main(args)
    trainer = cli.trainer

    assert trainer.state.finished and trainer.global_step >= 1, trainer.state
    losses = {k: float(v) for k, v in trainer.callback_metrics.items() if "loss" in k}
    assert losses, f"no loss logged: {sorted(trainer.callback_metrics)}"
    assert all(math.isfinite(v) for v in losses.values()), losses

    callback = trainer.checkpoint_callback
    assert isinstance(callback, ModelCheckpoint)
    path = Path(callback.last_model_path or callback.best_model_path).resolve()
    assert path.is_file() and tmp_path.resolve() in path.parents, path
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == trainer.global_step
    assert all(
        torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point()
    )
    assert checkpoint[MODEL_CONFIG]["class_path"].startswith("rsfm.models.")
    if callback.monitor is not None:
        score = callback.best_model_score
        assert score is not None and math.isfinite(float(score)), (callback.monitor, score)

    # fit ends with where everything went (rsfm.tasks.run_summary) for every family
    summary = capsys.readouterr().out.split("rsfm fit finished:", 1)[-1].splitlines()
    shown = dict(line.split(": ", 1) for line in summary if ": " in line and line[0] != " ")
    written_path = shown.get("last checkpoint") or shown["best checkpoint"].split(" (")[0]
    assert Path(written_path).resolve() == path
    assert Path(shown["resolved config"]).is_file()
    assert shown["publish"].startswith(f"rsfm hub push {Path(callback.dirpath).parent}")
    if written.get("trainer", {}).get("logger") is not False:
        assert any(line.startswith("logs (") for line in summary), summary
    if "MAEReconstructionPlot" in twin.read_text(encoding="utf-8"):
        folder = Path(shown["reconstructions"].split(" (")[0])
        assert (folder / "latest.png").is_file() and (folder / "epoch_000.png").is_file()

"""The real-data fine-tuning recipes (38-Cloud, Chesapeake, Indian Pines) run end to end.

Each shipped config is run through ``rsfm fit`` for two training steps and one validation batch
on the real catalogue samples, from random init (``weights: null``: the test does not depend on
a hub entry), and must leave a checkpoint with a finite val mIoU.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from rsfm.cli import main

pytestmark = pytest.mark.shared_data

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "clouds_landsat8": ("clouds-landsat8-tiny", 2),
    "landcover_naip": ("landcover-naip-tiny", 6),
    "indian_pines": ("indian-pines-tiny", 16),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_real_finetune_config_runs(
    name: str, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = REPO / "configs" / "finetune" / f"{name}.yaml"
    header = config.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith(f"# {CONFIGS[name][0]}:"), header
    main(
        [
            "fit",
            "--config", str(config),
            "--model.init_args.weights", "null",
            "--data.init_args.data_root", str(shared_data),
            "--trainer.max_epochs", "1",
            "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "1",
            "--trainer.enable_progress_bar", "false",
            "--trainer.default_root_dir", str(tmp_path),
            "--trainer.logger.init_args.save_dir", str(tmp_path),
            "--trainer.callbacks.init_args.dirpath", str(tmp_path / "checkpoints"),
        ]
    )  # fmt: skip
    summary = capsys.readouterr().out
    assert "rsfm fit finished: 2 optimiser steps" in summary, summary
    assert "best checkpoint:" in summary
    checkpoints = sorted((tmp_path / "checkpoints").glob("epoch*.ckpt"))
    assert checkpoints, summary
    ckpt = torch.load(checkpoints[0], map_location="cpu", weights_only=False)
    assert len(ckpt["rsfm_task"]["class_names"]) == CONFIGS[name][1]
    rows = list(csv.DictReader((tmp_path / "csv" / "version_0" / "metrics.csv").open()))
    val = [float(r["val/miou"]) for r in rows if r.get("val/miou")]
    assert val and all(math.isfinite(v) for v in val), rows
    losses = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert losses and all(math.isfinite(v) for v in losses), rows

"""The `rsfm` command: YAML runs, saved resolved config, --print_config, strict keys, DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rsfm.cli import _uses_short_class_names, main

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "conf" / "smarties_tiny.yaml"


def _run(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONHASHSEED="0")
    return subprocess.run(
        [sys.executable, "-m", "rsfm.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_fit_from_yaml_saves_resolved_config_logs_and_checkpoint(tmp_path: Path) -> None:
    result = _run(
        ["fit", "--config", str(TINY), "--trainer.default_root_dir", str(tmp_path)], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    configs = list(tmp_path.rglob("config.yaml"))
    assert configs, "resolved config was not saved beside the run"
    resolved = yaml.safe_load(configs[0].read_text())
    assert resolved["model"]["init_args"]["model"] == "smarties_tiny"
    assert resolved["data"]["init_args"]["patch_size"] == 32
    metrics = list(tmp_path.rglob("metrics.csv"))
    assert metrics and "train/loss" in metrics[0].read_text()
    ckpts = list(tmp_path.rglob("*.ckpt"))
    assert ckpts
    ckpt = torch.load(ckpts[0], map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2 * (32 // 8)  # 2 epochs x 4 batches

    out = tmp_path / "emb.npz"
    writer = {"class_path": "rsfm.tasks.writers.EmbeddingWriter", "init_args": {"output": str(out)}}
    predicted = _run(
        [
            "predict",
            "--config",
            str(TINY),
            "--ckpt_path",
            str(ckpts[0]),
            "--trainer.logger",
            "false",
            "--trainer.callbacks",
            json.dumps([writer]),
        ],
        cwd=tmp_path,
    )
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    saved = np.load(out)
    n = saved["embedding"].shape[0]
    assert n > 0 and saved["embedding"].shape[1] == 64 and np.isfinite(saved["embedding"]).all()
    assert saved["bounds"].shape == (n, 4) and (saved["bounds"][:, 2] > saved["bounds"][:, 0]).all()
    assert saved["crs"][0].startswith("EPSG:326") or "UTM" in saved["crs"][0]


def test_print_config_and_unknown_key(tmp_path: Path) -> None:
    shown = _run(["fit", "--config", str(TINY), "--print_config"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    printed = yaml.safe_load(shown.stdout)
    assert printed["model"]["class_path"] == "rsfm.tasks.mae.MAEPretrainTask"
    assert printed["model"]["init_args"]["mask_ratio"] == 0.75
    bad = tmp_path / "bad.yaml"
    config = yaml.safe_load(TINY.read_text())
    config["model"]["init_args"]["mask_ratoi"] = 0.5
    bad.write_text(yaml.safe_dump(config))
    result = _run(["fit", "--config", str(bad)], cwd=tmp_path)
    assert result.returncode != 0
    assert "mask_ratoi" in result.stderr


def test_short_class_names_resolve_in_any_family(tmp_path: Path) -> None:
    config = yaml.safe_load((REPO / "tests" / "conf" / "sqa_quickstart.yaml").read_text())
    config["model"]["class_path"] = "SQATask"  # a family outside the core modules
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump(config))
    assert _uses_short_class_names(["fit", "--config", str(short)])
    assert not _uses_short_class_names(["fit", "--config", str(TINY)])
    assert _uses_short_class_names(["fit", "--model", "MAEPretrainTask"])
    assert not _uses_short_class_names(["fit", "--model=rsfm.tasks.mae.MAEPretrainTask"])
    shown = _run(["fit", "--config", str(short), "--print_config"], cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert yaml.safe_load(shown.stdout)["model"]["class_path"] == "rsfm.tasks.sqa.SQATask"


@pytest.mark.parametrize("command", ["data", "hub", "tile", "generate", "super-resolve", "assess"])
def test_every_subcommand_dispatches_to_its_parser(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_data_sensors_lists_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "sensors", "sentinel2_l1c"]) == 0
    out = capsys.readouterr().out
    assert "B8A" in out and "864.7" in out and "B10" in out


def test_two_process_ddp_matches_single_process_steps(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    single = _run(
        [
            "fit",
            "--config",
            str(TINY),
            "--trainer.default_root_dir",
            str(tmp_path / "one"),
            "--data.init_args.batch_size",
            "8",
        ],
        cwd=tmp_path / "one",
    )
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _run(
        [
            "fit",
            "--config",
            str(TINY),
            "--trainer.default_root_dir",
            str(tmp_path / "two"),
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp",
            "--data.init_args.batch_size",
            "4",
        ],
        cwd=tmp_path / "two",
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    results = {}
    for name in ("one", "two"):
        ckpt_path = sorted((tmp_path / name).rglob("last.ckpt"))[0]
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        params = ckpt["state_dict"]
        assert all(torch.isfinite(v).all() for v in params.values())
        results[name] = ckpt["global_step"]
    assert results["one"] == results["two"] == 2 * (32 // 8)

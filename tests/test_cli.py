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

from rsfm.cli import main

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


def test_short_class_names_resolve_for_core_classes_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.argv", ["rsfm"])  # LightningCLI warns about pytest's own argv
    config = yaml.safe_load(TINY.read_text())
    config["model"]["class_path"] = "MAEPretrainTask"  # a core class (rsfm.cli.CORE_MODULES)
    short = tmp_path / "short.yaml"
    short.write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(short), "--print_config"])
    assert exit_info.value.code in (0, None)
    assert yaml.safe_load(capsys.readouterr().out)["model"]["class_path"] == (
        "rsfm.tasks.mae.MAEPretrainTask"
    )
    # Other families are imported from their full class_path only (a fresh process: nothing
    # else has imported rsfm.tasks.sqa there).
    config = yaml.safe_load((REPO / "tests" / "conf" / "sqa_quickstart.yaml").read_text())
    config["model"]["class_path"] = "SQATask"
    short.write_text(yaml.safe_dump(config))
    shown = _run(["fit", "--config", str(short), "--print_config"], cwd=tmp_path)
    assert shown.returncode != 0 and "SQATask" in shown.stderr


HELP_COMMANDS = [
    ["--help"],
    *([command, "--help"] for command in ("tile", "generate", "super-resolve", "assess")),
    *(["hub", *action, "--help"] for action in ([], ["list"], ["show"], ["push"], ["pull"])),
    ["hub", "verify", "--help"],
    *(["data", *action, "--help"] for action in ([], ["sensors"], ["synthetic"], ["stats"])),
    *([command, "--help"] for command in ("fit", "validate", "test", "predict")),
]


def test_plain_commands_help_without_heavy_imports() -> None:
    """`rsfm --help` and every plain command's --help import no torch (a fresh process)."""
    code = (
        "import contextlib, io, json, sys\n"
        "from rsfm.cli import main\n"
        "heavy = ('torch', 'lightning', 'rasterio', 'diffusers', 'open_clip', 'matplotlib')\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main(args)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "    loaded = [name for name in heavy if name in sys.modules]\n"
        "    print(json.dumps([args, 'usage' in out.getvalue(), loaded]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(HELP_COMMANDS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [args for args, _, _ in rows] == HELP_COMMANDS
    assert [(args, usage, loaded) for args, usage, loaded in rows if loaded or not usage] == []


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


def test_fit_help_lists_the_recipes_and_help_all_is_lightnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "configs/smarties/quickstart.yaml" in out and "--help-all" in out
    assert out.count("configs/") >= len(list((REPO / "configs").glob("*/*.yaml")))
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help-all"])
    assert exit_info.value.code == 0
    assert "--trainer.max_epochs" in capsys.readouterr().out  # LightningCLI's full help


def test_hub_list_reads_the_index_without_torch() -> None:
    code = (
        "import sys\n"
        "from rsfm.cli import main\n"
        "assert main(['hub', 'list']) == 0\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "smarties-tiny" in result.stdout and result.stdout.strip().endswith("False")

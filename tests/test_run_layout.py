"""Every family writes one run layout and ``rsfm fit`` ends by naming it (issue 13).

``<run root>/config.yaml`` (the resolved config), ``<run root>/checkpoints/`` (best and
``last.ckpt``), loggers beside them, whatever the family and whether or not its config names a
checkpoint folder; the closing summary names those paths and the ``rsfm hub push`` command of
the run root. Before, LightningCLI saved the config under ``<logger>/version_N/`` and a
ModelCheckpoint without ``dirpath`` (crefdiff, sqa) wrote under ``logs/version_N/checkpoints``,
so ``--ckpt_path last`` of a second run (version N+1) found nothing and trained from scratch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rsfm.cli import lightning_main

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "tests" / "conf"
SHORT = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
]

# One twin per family whose layout differed (crefdiff, sqa: no dirpath) or that writes more
# beside its checkpoints (MAE reconstructions, diffusion EMA).
FAMILIES = ["crefdiff_tiny", "sqa_quickstart", "smarties_tiny", "text2earth_tiny"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # loggers and datasets with relative paths write here
    monkeypatch.setattr("sys.argv", ["rsfm"])


def _summary(out: str) -> dict[str, str]:
    """``key: value`` lines of the closing summary (not the indented metrics)."""
    lines = out.split("rsfm fit finished:", 1)[1].splitlines()
    return dict(line.split(": ", 1) for line in lines[1:] if ": " in line and line[0] != " ")


@pytest.mark.parametrize("twin", FAMILIES)
def test_every_family_writes_the_run_layout(
    twin: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = (tmp_path / "runs" / twin).resolve()
    config = CONF / f"{twin}.yaml"
    cli = lightning_main(
        ["fit", "--config", str(config), "--trainer.default_root_dir", str(root)] + SHORT
    )
    assert cli.trainer.state.finished

    saved = sorted(p.resolve() for p in tmp_path.rglob("config.yaml"))
    assert saved == [root / "config.yaml"], saved  # not under csv|logs/version_0/
    resolved = yaml.safe_load((root / "config.yaml").read_text(encoding="utf-8"))
    written = yaml.safe_load(config.read_text(encoding="utf-8"))
    assert resolved["model"]["class_path"] == written["model"]["class_path"]
    assert resolved["trainer"]["default_root_dir"] == str(root)
    ckpts = sorted(p.resolve() for p in tmp_path.rglob("*.ckpt"))
    assert ckpts and all(p.parent == root / "checkpoints" for p in ckpts), ckpts
    assert (root / "checkpoints" / "last.ckpt").is_file()

    shown = _summary(capsys.readouterr().out)
    assert Path(shown["resolved config"]) == root / "config.yaml"
    assert Path(shown["last checkpoint"]) == root / "checkpoints" / "last.ckpt"
    best = Path(shown["best checkpoint"].split(" (")[0])
    assert best.parent == root / "checkpoints" and best.is_file()
    assert shown["publish"].startswith(f"rsfm hub push {root} --name {twin.replace('_', '-')}")


def test_run_root_defaults_to_runs_config_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config without ``trainer.default_root_dir`` runs in ``runs/<config name>``."""
    lightning_main(["fit", "--config", str(CONF / "crefdiff_tiny.yaml"), *SHORT])
    root = (tmp_path / "runs" / "crefdiff_tiny").resolve()
    assert (root / "config.yaml").is_file() and (root / "checkpoints" / "last.ckpt").is_file()
    assert Path(_summary(capsys.readouterr().out)["resolved config"]) == root / "config.yaml"


def test_second_run_resumes_from_the_first_runs_last_checkpoint(tmp_path: Path) -> None:
    """``--ckpt_path last`` finds the last.ckpt of the run root (crefdiff: was version_0/)."""
    args = ["fit", "--config", str(CONF / "crefdiff_tiny.yaml"), *SHORT]
    first = lightning_main(args).trainer
    steps = first.global_step
    root = (tmp_path / "runs" / "crefdiff_tiny").resolve()
    assert steps >= 1 and (root / "checkpoints" / "last.ckpt").is_file()

    second = lightning_main([*args, "--trainer.max_epochs=2", "--ckpt_path", "last"]).trainer
    assert second.ckpt_path is not None, "no last checkpoint found: trained from scratch"
    assert Path(second.ckpt_path).resolve() == root / "checkpoints" / "last.ckpt"
    assert second.global_step == 2 * steps

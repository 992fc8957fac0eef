"""Errors end a command with one line (file, problem, fix) and exit 1; --debug shows tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rsfm.cli import main
from rsfm.data.errors import UnreadableRasterError

REPO = Path(__file__).resolve().parents[1]


def _one_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("content", [None, b"", b"not a tiff at all" * 10])
def test_unreadable_inputs_give_one_line_naming_the_file(tmp_path: Path, capsys, content) -> None:
    source = tmp_path / "scene.tif"
    if content is not None:
        source.write_bytes(content)
    argv = [
        "tile",
        "water-s2-tiny",
        str(source),
        str(tmp_path / "out.tif"),
        "--hub",
        str(REPO / "checkpoints"),
    ]
    assert main(argv, one_line_errors=True) == 1
    line = _one_line(capsys)
    assert line.startswith("rsfm tile: error: ") and str(source) in line and "--debug" in line
    assert not (tmp_path / "out.tif").exists()


def test_debug_and_env_show_the_exception(tmp_path: Path, monkeypatch) -> None:
    argv = ["tile", "water-s2-tiny", str(tmp_path / "missing.tif"), str(tmp_path / "o.tif")]
    with pytest.raises(UnreadableRasterError, match="missing.tif: no such file"):
        main([*argv, "--debug"], one_line_errors=True)
    monkeypatch.setenv("RSFM_DEBUG", "1")
    with pytest.raises(UnreadableRasterError):
        main(argv, one_line_errors=True)


def test_unknown_dataset_is_one_line_without_quotes(capsys) -> None:
    assert main(["evaluate", "--dataset", "nope"], one_line_errors=True) == 1
    line = _one_line(capsys)
    assert line.startswith("rsfm evaluate: error: unknown dataset 'nope'; registered datasets:")


def test_the_console_script_prints_no_traceback(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "rsfm.cli", "tile", "water-s2-tiny"]
    command += [str(tmp_path / "no.tif"), str(tmp_path / "o.tif")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "no.tif: no such file" in result.stderr


CONFIG = REPO / "tests" / "conf" / "smarties_tiny.yaml"


def _typo_config(tmp_path: Path, dotted: str) -> Path:
    """The tiny MAE config with ``dotted`` (``a.b.c``) set to 1 (parents made as needed)."""
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    section = config
    *parents, leaf = dotted.split(".")
    for name in parents:
        section = section.setdefault(name, {})
    section[leaf] = 1
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("typo", "shown", "suggestion"),
    [
        ("model.init_args.learning_rate", "model.init_args.learning_rate", "lr"),
        ("trainr.max_epochs", "trainr", "trainer"),
        ("trainer.max_epoch", "trainer.max_epoch", "max_epochs"),
        ("data.init_args.batch_szie", "data.init_args.batch_szie", "batch_size"),
        ("data.init_args.synthetic.n_scene", "data.init_args.synthetic.n_scene", "n_scenes"),
        ("trainer.callbacks", None, None),  # not a typo: a bad value (list expected, got 1)
    ],
)
def test_config_typo_names_the_key_and_a_suggestion_first(
    typo: str, shown: str | None, suggestion: str | None, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("sys.argv", ["rsfm"])  # LightningCLI warns about pytest's own argv
    path = _typo_config(tmp_path, typo)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(path)], one_line_errors=True)
    assert exit_info.value.code == 2
    line = _one_line(capsys)  # no usage dump before (or after) it
    if shown is None:
        assert line.startswith("rsfm fit: error: `trainer.callbacks` in ") and "got 1" in line
        return
    prefix = f"rsfm fit: error: unknown key `{shown}`"
    assert line.startswith(prefix) and f"in {path}: did you mean `{suggestion}`" in line


@pytest.mark.parametrize(
    ("flag", "shown", "suggestion"),
    [
        ("--model.init_args.learning_rate=0.1", "model.init_args.learning_rate", "lr"),
        ("--model.learning_rate=0.1", "model.init_args.learning_rate", "lr"),
        ("--trainer.max_epohcs=1", "trainer.max_epohcs", "max_epochs"),
        ("--trainr.max_epochs=1", "trainr", "trainer"),
    ],
)
def test_command_line_typo_names_the_key_and_a_suggestion(
    flag: str, shown: str, suggestion: str, capsys, monkeypatch
) -> None:
    monkeypatch.setattr("sys.argv", ["rsfm"])
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(CONFIG), flag], one_line_errors=True)
    assert exit_info.value.code == 2
    line = _one_line(capsys)
    assert line.startswith(f"rsfm fit: error: unknown key `{shown}`")
    assert f"on the command line: did you mean `{suggestion}`" in line


def test_config_typo_from_the_console_script_is_one_line(tmp_path: Path) -> None:
    path = _typo_config(tmp_path, "model.init_args.learning_rate")
    command = [sys.executable, "-m", "rsfm.cli", "fit", "--config", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "did you mean `lr`" in lines[0], result.stderr[-2000:]
    debug = subprocess.run(
        [*command, "--debug"], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "ConfigError: unknown key `model.init_args.learning_rate`" in debug.stderr

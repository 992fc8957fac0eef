"""Errors end a command with one line (file, problem, fix) and exit 1; --debug shows tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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

"""``rsfm super-resolve`` checks its inputs against the model before any compute (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rasters import smooth, write_geotiff

from rsfm.band_stats import BandStats
from rsfm.cli import main
from rsfm.models.crefdiff import CRefDiffModel

REPO = Path(__file__).resolve().parents[2]
RGB_NM = (660.0, 560.0, 490.0)


def _stats(n: int) -> dict:
    return BandStats(
        band_names=["R", "G", "B"][:n],
        wavelengths=list(RGB_NM[:n]),
        low=[0.0] * n,
        high=[2000.0] * n,
        mean=[1000.0] * n,
        std=[300.0] * n,
    ).to_dict()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub with an untrained crefdiff_tiny (3 LR and 3 reference bands, RGB statistics)."""
    from rsfm.hub import push
    from rsfm.tasks.refsr import RefSRTask

    torch.manual_seed(0)
    task = RefSRTask(model="crefdiff_tiny")
    task.band_stats = {"lr": _stats(3), "reference": _stats(3)}
    root = tmp_path_factory.mktemp("hub")
    push(task, "sr-tiny", hub=str(root))
    return root


@pytest.fixture
def no_compute(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any sampling fails loudly: the checks must come first."""

    def sample(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr(CRefDiffModel, "sample", sample)


def _files(tmp_path: Path, lr_bands: int, ref_bands: int = 3) -> tuple[Path, Path]:
    waves = [{"wavelength": str(400.0 + 5.0 * i)} for i in range(lr_bands)]  # NEON-like tags
    lr = write_geotiff(tmp_path / "lr.tif", smooth(lr_bands, 16, 16), res=40, band_tags=waves)
    ref = write_geotiff(tmp_path / "ref.tif", smooth(ref_bands, 64, 64, seed=1), res=10)
    return lr, ref


def _run(hub: Path, lr: Path, ref: Path, out: Path, *extra: str) -> int:
    argv = ["super-resolve", str(lr), "--ref", str(ref), "--model", "sr-tiny", "--hub", str(hub)]
    return main([*argv, "--scale", "4", "--out", str(out), "--no-progress", *extra], True)


def _one_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_369_band_input_is_refused_with_the_bands_to_pick(
    hub: Path, tmp_path: Path, capsys, no_compute
) -> None:
    lr, ref = _files(tmp_path, 369)
    out = tmp_path / "sr.tif"
    assert _run(hub, lr, ref, out) == 1
    line = _one_line(capsys)
    assert line.startswith(f"rsfm super-resolve: error: {lr}: the input has 369 bands, but ")
    assert "sr-tiny@" in line and "takes 3 band(s) (R, G, B) as its input" in line
    # the file's bands nearest the card's 660 / 560 / 490 nm: 400 + 5 * (i - 1) nm
    assert "--bands 53 33 19" in line
    assert not out.exists()


def test_the_suggested_bands_run(hub: Path, tmp_path: Path) -> None:
    lr, ref = _files(tmp_path, 369)
    out = tmp_path / "sr.tif"
    assert _run(hub, lr, ref, out, "--bands", "53", "33", "19", "--steps", "1") == 0
    import rasterio

    with rasterio.open(out) as src:
        assert (src.count, src.height, src.width) == (3, 64, 64)


@pytest.mark.parametrize(
    ("lr_bands", "ref_bands", "extra", "file", "expected"),
    [
        (3, 4, (), "ref", "the reference has 4 bands, but sr-tiny@"),
        (3, 4, (), "ref", "--ref-bands 1 2 3"),
        (369, 3, ("--bands", "1", "2"), "lr", "--bands picks 2 band(s), but sr-tiny@"),
        (3, 3, ("--bands", "1", "2", "7"), "lr", "--bands 1 2 7 asks for band(s) [7], but "),
        (2, 3, (), "lr", "the input has 2 band(s), but sr-tiny@"),
    ],
)
def test_band_counts_are_checked_before_any_compute(
    hub: Path, tmp_path: Path, capsys, no_compute, lr_bands, ref_bands, extra, file, expected
) -> None:
    lr, ref = _files(tmp_path, lr_bands, ref_bands)
    assert _run(hub, lr, ref, tmp_path / "sr.tif", *extra) == 1
    line = _one_line(capsys)
    assert line.startswith(f"rsfm super-resolve: error: {lr if file == 'lr' else ref}: ")
    assert expected in line


def test_scale_must_be_positive(hub: Path, tmp_path: Path, capsys, no_compute) -> None:
    lr, ref = _files(tmp_path, 3)
    assert _run(hub, lr, ref, tmp_path / "sr.tif", "--scale", "-2") == 1
    assert "--scale must be a positive integer, got -2 (the model was trained at x4)" in (
        _one_line(capsys)
    )


def test_no_model_given_says_what_to_do(tmp_path: Path, capsys) -> None:
    lr, ref = _files(tmp_path, 3)
    argv = ["super-resolve", str(lr), "--ref", str(ref), "--out", str(tmp_path / "sr.tif")]
    assert main(argv, one_line_errors=True) == 1
    line = _one_line(capsys)
    assert "no --model given" in line and "checkpoints/" in line and "--model NAME" in line


def test_a_model_that_is_not_sr_is_named_with_its_task(tmp_path: Path, capsys) -> None:
    lr, ref = _files(tmp_path, 3)
    argv = ["super-resolve", str(lr), "--ref", str(ref), "--out", str(tmp_path / "sr.tif")]
    argv += ["--model", "smarties-tiny", "--hub", str(REPO / "checkpoints")]
    assert main(argv, one_line_errors=True) == 1
    line = _one_line(capsys)
    assert "--model smarties-tiny is a masked-image-modeling model" in line
    assert "not a reference-guided super-resolution (CRefDiff) model" in line

"""``rsfm assess`` / the SQA tile hook refuse models that are not what they need (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rasters import smooth, write_geotiff

from rsfm.cli import main
from rsfm.sensors import get_sensor

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints"
WATER = str(SHIPPED / "water-s2-tiny@1.0.0")  # a segmenter
ENCODER = str(SHIPPED / "smarties-tiny@1.0.0")  # an MAE encoder


@pytest.fixture(scope="module")
def sqa(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Entry folder of an untrained sqa_tiny (the checks come before any score)."""
    from rsfm.hub import push
    from rsfm.models.registry import create_model

    torch.manual_seed(0)
    hub = tmp_path_factory.mktemp("hub")
    ref = push(create_model("sqa_tiny"), "sqa-tiny", hub=str(hub), card={"input_size": 32})
    (folder,) = [p for p in hub.iterdir() if p.is_dir() and p.name.startswith("sqa-tiny@")]
    assert str(ref).startswith("sqa-tiny@")
    return str(folder)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    s2 = get_sensor("sentinel2_l1c")
    tags = [{"wavelength": str(b.center_nm)} for b in s2.bands]
    data = smooth(len(s2), 64, 64)
    return write_geotiff(tmp_path / "s2.tif", data, descriptions=s2.band_names, band_tags=tags)


@pytest.fixture
def no_scoring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring fails loudly: the checks must come before any pixel is read."""

    def assess_image(*args, **kwargs):
        raise AssertionError("the image was assessed")

    monkeypatch.setattr("rsfm.inference.assess.assess_image", assess_image)


def _one_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def _assess(image: Path, *args: str) -> int:
    return main(["assess", str(image), "--sensor", "sentinel2_l1c", *args], one_line_errors=True)


@pytest.mark.parametrize("other", ["encoder", "sqa"])
def test_rank_with_a_model_that_is_not_a_segmenter(
    sqa: str, image: Path, capsys, no_scoring, other: str
) -> None:
    folder = ENCODER if other == "encoder" else sqa
    assert _assess(image, "--rank", WATER, folder, "--model", sqa) == 1
    line = _one_line(capsys)
    name = Path(folder).name
    assert line.startswith(f"rsfm assess: error: --rank {name} is a ")
    task = "segmentation-quality-assessment" if other == "sqa" else "(SmartiesMAE)"
    assert task in line and "not a segmenter: give segmentation models" in line


def test_segmenter_that_is_an_encoder(sqa: str, image: Path, capsys, no_scoring) -> None:
    assert _assess(image, "--segmenter", ENCODER, "--model", sqa) == 1
    line = _one_line(capsys)
    assert line.startswith("rsfm assess: error: --segmenter smarties-tiny@1.0.0 is a ")
    assert "not a segmenter" in line


def test_model_that_is_not_sqa_names_its_task(image: Path, capsys, no_scoring) -> None:
    assert _assess(image, "--segmenter", WATER, "--model", WATER) == 1
    line = _one_line(capsys)
    assert line.startswith(f"rsfm assess: error: --model {WATER} is a segmentation model")
    assert "(FineTuneModel), not a segmentation-quality-assessment (SQA) model" in line


def test_a_segmenter_is_assessed(sqa: str, image: Path, capsys) -> None:
    assert _assess(image, "--segmenter", WATER, "--model", sqa) == 0
    assert "predicted accuracy of water-s2-tiny@1.0.0: " in capsys.readouterr().out


def test_tile_quality_hook_refuses_an_encoder(sqa: str, image: Path, tmp_path, capsys) -> None:
    out = tmp_path / "quality.tif"
    argv = ["tile", sqa, str(image), str(out), "--segmenter", ENCODER]
    assert main([*argv, "--sensor", "sentinel2_l1c"], one_line_errors=True) == 1
    assert "--segmenter smarties-tiny@1.0.0 is a " in _one_line(capsys)
    assert not out.exists()

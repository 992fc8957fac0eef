"""``rsfm generate`` shows a progress bar over the sampling and names every file it wrote,
the last line saying where the results went (issue 13); its ``--guidance-schedule`` choices are
the model's schedules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rsfm.hub
from rsfm.inference.generate import GUIDANCE_SCHEDULES, _parser, generate_main
from rsfm.models.layers.diffusion import GUIDANCE_SCHEDULES as MODEL_SCHEDULES
from rsfm.models.registry import create_model

SMALL_UNET = {
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = create_model("text2earth_tiny", unet=SMALL_UNET, image_size=16)
    folder = tmp_path_factory.mktemp("hub")
    rsfm.hub.push(model, "t2e-out", hub=folder)
    return folder


def _generate(hub: Path, out: Path, *extra: str) -> None:
    args = ["a river", "--model", "t2e-out", "--hub", str(hub), "--gsd", "10", "--out", str(out)]
    assert generate_main([*args, "--steps", "3", *extra]) == 0


def test_generate_prints_png_and_geotiff_paths_and_where_they_went(
    hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gen"
    _generate(hub, out, "--n", "2")
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    for index in range(2):
        tif, png = out / f"generated_{index:03d}.tif", out / f"generated_{index:03d}.png"
        assert tif.is_file() and png.is_file()
        assert any(line.startswith(f"{tif} (GeoTIFF, 4 bands, 16x16 px at 10 m)") for line in lines)
        assert any(line.startswith(f"{png} (RGB preview)") for line in lines)
    assert lines[-1] == f"rsfm generate: wrote 2 GeoTIFFs and 2 PNG previews to {out}/"
    # the bar (stderr) counts sampling steps of every image: 2 images x 3 steps
    assert "rsfm generate: sampling" in captured.err and "6/6" in captured.err


def test_generate_canvas_prints_both_paths(
    hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "canvas"
    _generate(hub, out, "--size", "16", "24", "--no-progress")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"{out / 'generated_000.tif'} (GeoTIFF, 16x24 px, 2 tiles)")
    assert lines[1] == f"{out / 'generated_000.png'} (RGB preview)"
    assert lines[-1] == f"rsfm generate: wrote 1 GeoTIFF and 1 PNG preview to {out}/"


def test_no_progress_hides_the_bar(
    hub: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _generate(hub, tmp_path / "quiet", "--no-progress")
    assert "sampling" not in capsys.readouterr().err


def test_guidance_schedule_choices_are_the_models() -> None:
    assert GUIDANCE_SCHEDULES == MODEL_SCHEDULES
    action = next(a for a in _parser()._actions if a.dest == "guidance_schedule")
    assert tuple(action.choices) == MODEL_SCHEDULES
    assert all(name in action.help for name in MODEL_SCHEDULES)

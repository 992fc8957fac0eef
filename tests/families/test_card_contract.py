"""The checkpoint -> card -> inference contract, end to end on CPU.

``rsfm fit`` fine-tunes the tiny segmentation twin on the embedded default, ``rsfm hub push``
of the run folder (no hand-written card) records what the task knows (task, class names, the
sensors of each stage, input and patch size), and ``rsfm tile`` picks class output by itself and
writes the class names into the GeoTIFF tags and the plot legend.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

import rsfm.hub as hub
from rsfm.cli import main
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.spectra import CLASS_NAMES
from rsfm.data.synthetic.world import ensure_synthetic_world, scene_files
from rsfm.inference.plot import legend_of

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "tests" / "conf" / "finetune_segmentation.yaml"
TINY_WORLD = SyntheticWorldConfig(seed=0, n_scenes=3, scene_size_m=960)  # the twin's world


def test_fine_tuned_segmenter_card_and_tile_carry_the_task_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)  # the twin's CSV logger writes under "."
    fit = ["fit", "--config", str(CONFIG), "--trainer.default_root_dir", str(run)]
    fit += ["--trainer.max_epochs", "1", "--model.init_args.weights", "smarties-tiny@1.0.0"]
    assert main(fit) == 0

    landcover = tmp_path / "hub"
    assert main(["hub", "push", str(run), "--name", "landcover-tiny", "--hub", str(landcover)]) == 0
    card = hub.load_card("landcover-tiny", landcover)
    assert (card.task, card.output, card.pipeline_tag) == (
        "segmentation",
        "classes",
        "image-segmentation",
    )
    assert card.class_names == list(CLASS_NAMES) and len(card.class_names) == 7
    assert (card.input_size, card.patch_size) == (32, 8)
    assert [s.stage for s in card.stages] == ["pretraining", "fine-tuning"]
    tuned = card.stage("fine-tuning")
    assert (
        list(tuned.sensors) == ["sentinel2_l1c"] and len(tuned.sensors["sentinel2_l1c"].bands) == 13
    )
    assert list(card.sensors) == ["sentinel2_l1c"]  # the head does not claim Sentinel-1
    assert "sentinel1_grd" in card.stage("pretraining").sensors  # ... its encoder saw it
    assert tuned.datasets and tuned.datasets[0]["sha256"]  # provenance: the files read
    assert set(card.normalization) >= {"sentinel2_l1c", "naip"}
    text = (landcover / "landcover-tiny@1.0" / "card.md").read_text()
    assert "task: `segmentation`, default output: `classes`" in text and "| 6 |" in text

    scene = scene_files(ensure_synthetic_world(config=TINY_WORLD), "sentinel2_l1c")[-1]
    out, png = tmp_path / "landcover.tif", tmp_path / "landcover.png"
    capsys.readouterr()
    tile = ["tile", "landcover-tiny", str(scene), str(out), "--hub", str(landcover)]
    assert main([*tile, "--tile-size", "32", "--overlap", "8", "--plot", str(png)]) == 0
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.tags()["rsfm_output"] == "classes" and dst.count == 1  # chosen by itself
        assert json.loads(dst.tags()["CLASS_NAMES"]) == list(CLASS_NAMES)
        assert dst.crs == src.crs and dst.transform == src.transform
        valid = src.read_masks(1) > 0
        assert set(np.unique(dst.read(1)[valid])) <= set(range(7))
    assert legend_of(png) == list(CLASS_NAMES)

"""``rsfm tile`` reads the typed card: default output, family adapters, hooks, class names."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from rasters import unit_stats, write_geotiff
from torch import nn

import rsfm.hub as hub
import rsfm.inference.command as command
from rsfm.cli import main
from rsfm.data.errors import BandMismatchError
from rsfm.hub.card import ModelCard, StageCard, sensor_bands
from rsfm.inference import tile_raster
from rsfm.inference.bands import input_sensor, select_bands
from rsfm.inference.plot import legend_labels, legend_of, render_side_by_side
from rsfm.models.registry import create_model
from rsfm.sensors import get_sensor

CLASSES = ["water", "forest", "crop", "urban"]
S2 = get_sensor("sentinel2_l1c")


def _s2_raster(path: Path, size: int = 64) -> Path:
    pixels = np.random.default_rng(0).random((13, size, size), dtype=np.float32)
    return write_geotiff(path, pixels)


@pytest.fixture()
def seg_hub(tmp_path: Path) -> Path:
    """A 4-class dense segmenter on the tiny SMARTIES encoder, pushed with its class names."""
    torch.manual_seed(0)
    model = create_model("smarties_tiny_seg_linear", num_outputs=len(CLASSES))
    card = {
        "task": "segmentation",
        "class_names": CLASSES,
        "normalization": {"sentinel2_l1c": unit_stats("sentinel2_l1c")},
    }
    hub.push(model, "seg", "1.0", tmp_path / "hub", card=card)
    return tmp_path / "hub"


# ----------------------------------------------------------------------------- output kind
class _Adapted(nn.Module):
    """A family that tiles differently: it brings its own ``tile_predict_fn``."""

    def tile_predict_fn(self, wavelengths: torch.Tensor, output: str) -> Any:
        def predict(image: torch.Tensor) -> torch.Tensor:
            value = 1.0 if output == "values" else float(len(wavelengths))
            return torch.full((image.shape[0], 3, *image.shape[-2:]), value)

        return predict


class _PooledHead(nn.Module):
    """A window-level classifier: ``[B, C, H, W] -> [B, K]``."""

    dense = False

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(2, 3)

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        return self.head(image.mean(dim=(2, 3)))


def test_default_output_comes_from_the_card() -> None:
    segmenter = create_model("smarties_tiny_seg_linear", num_outputs=4)
    assert command.default_output(segmenter, ModelCard(task="segmentation", output="classes")) == (
        "classes"
    )
    assert command.default_output(nn.Identity(), ModelCard(task="regression", output="values")) == (
        "values"
    )
    # Cards without an output kind (pushed before it was recorded): the model decides.
    assert command.default_output(segmenter, ModelCard(task="feature-extraction")) == "classes"
    assert command.default_output(_Adapted(), ModelCard()) == "classes"
    assert command.default_output(create_model("smarties_tiny"), None) == "embeddings"


def test_family_adapter_and_window_level_heads() -> None:
    image = torch.zeros(2, 5, 8, 8)
    out = command.make_predict_fn(_Adapted(), np.arange(5.0), "classes")(image)
    assert out.shape == (2, 3, 8, 8) and float(out.max()) == 5.0  # the adapter's own function
    torch.manual_seed(0)
    pooled = _PooledHead()
    probabilities = command.make_predict_fn(pooled, np.arange(2.0), "probabilities")(image[:, :2])
    assert probabilities.shape == (2, 3, 8, 8)  # one prediction spread over the window
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(2, 8, 8))
    multilabel = command.make_predict_fn(pooled, np.arange(2.0), "probabilities", multilabel=True)
    with torch.no_grad():
        expected = pooled(image[:, :2], torch.arange(2.0)).sigmoid()
    torch.testing.assert_close(multilabel(image[:, :2])[:, :, 3, 3], expected)


def test_the_tile_command_has_no_isinstance_on_model_families() -> None:
    source = inspect.getsource(command)
    assert "isinstance" not in source
    assert "CoLearningModel" not in source and "SQAModel" not in source


def test_quality_cards_go_to_their_hook_and_image_cards_are_refused(
    seg_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = create_model("smarties_tiny_seg_linear", num_outputs=2)
    hub.push(model, "qa", "1.0", seg_hub, card={"output": "quality"})
    hub.push(model, "sr", "1.0", seg_hub, card={"task": "super-resolution"})
    calls = []
    monkeypatch.setattr(command, "_run_hook", lambda spec, m, args: calls.append(spec) or 0)
    raster = _s2_raster(tmp_path / "s2.tif")
    args = [str(raster), str(tmp_path / "out.tif"), "--hub", str(seg_hub)]
    assert main(["tile", "qa", *args]) == 0
    assert calls == ["rsfm.inference.assess:tile_quality_main"]
    assert main(["tile", "sr", *args]) == 2  # one line naming the command to use
    assert not (tmp_path / "out.tif").exists()


# ----------------------------------------------------------------------------- class names
def test_tile_writes_class_names_into_tags_descriptions_and_legend(
    seg_hub: Path, tmp_path: Path
) -> None:
    raster = _s2_raster(tmp_path / "s2.tif")
    out, png = tmp_path / "classes.tif", tmp_path / "classes.png"
    common = ["--hub", str(seg_hub), "--tile-size", "32", "--overlap", "8"]
    assert main(["tile", "seg", str(raster), str(out), *common, "--plot", str(png)]) == 0
    with rasterio.open(out) as dst:
        assert dst.count == 1 and dst.tags()["rsfm_output"] == "classes"
        assert json.loads(dst.tags()["CLASS_NAMES"]) == CLASSES
        assert set(np.unique(dst.read(1))) <= set(range(len(CLASSES)))
    assert legend_of(png) == CLASSES
    probabilities = tmp_path / "probabilities.tif"
    argv = ["tile", "seg", str(raster), str(probabilities), *common, "--output", "probabilities"]
    assert main(argv) == 0
    with rasterio.open(probabilities) as dst:
        assert list(dst.descriptions) == CLASSES
        assert json.loads(dst.tags()["CLASS_NAMES"]) == CLASSES


def test_legend_labels_prefer_names_then_tags() -> None:
    assert legend_labels(3, ["a", "b", "c"]) == ["a", "b", "c"]
    assert legend_labels(3, None, {"CLASS_NAMES": json.dumps(["x, y", "z"])}) == [
        "x, y",
        "z",
        "class 2",
    ]
    assert legend_labels(2, None, {"rsfm_class_names": "p,q"}) == ["p", "q"]
    assert legend_labels(2) == ["class 0", "class 1"]


def test_engine_tags_class_names_of_a_plain_run(tmp_path: Path) -> None:
    raster = write_geotiff(tmp_path / "in.tif", np.ones((2, 40, 40), dtype=np.float32))
    names = ["bare, dry", "wet"]

    def predict(image: torch.Tensor) -> torch.Tensor:
        return torch.stack([image[:, 0], 1 - image[:, 0]], dim=1)

    out = tmp_path / "out.tif"
    tile_raster(predict, raster, out, output="classes", band_names=names, tile_size=32,
                overlap=8, progress=False)  # fmt: skip
    with rasterio.open(out) as dst:
        assert json.loads(dst.tags()["CLASS_NAMES"]) == names
    png = render_side_by_side(raster, out, tmp_path / "p.png", rgb_bands=(1,),
                              class_colors=[(0, 0, 0), (1, 1, 1)], max_size=32)  # fmt: skip
    assert legend_of(png) == names
    values = tmp_path / "values.tif"
    tile_raster(predict, raster, values, output="values", tile_size=32, overlap=8, progress=False)
    assert "CLASS_NAMES" not in rasterio.open(values).tags()
    assert legend_of(render_side_by_side(raster, values, tmp_path / "v.png", (1,))) is None


# ----------------------------------------------------------------------------- bands
def _staged_card() -> ModelCard:
    """A head fine-tuned on Sentinel-2 whose encoder was pretrained on NAIP and Sentinel-2."""
    naip = sensor_bands("naip")
    s2 = sensor_bands("sentinel2_l1c")
    return ModelCard(
        task="segmentation",
        sensors={"sentinel2_l1c": s2},
        stages=[
            StageCard("pretraining", {"naip": naip, "sentinel2_l1c": s2}),
            StageCard("fine-tuning", {"sentinel2_l1c": s2}),
        ],
        normalization={s: unit_stats(s) for s in ("sentinel2_l1c", "naip")},
    )


def test_band_selection_reads_every_stage_of_the_typed_card(tmp_path: Path) -> None:
    card = _staged_card()
    naip = write_geotiff(tmp_path / "naip.tif", np.ones((4, 16, 16), dtype=np.float32))
    sensor = input_sensor(naip, None, card)  # 4 bare bands: the card's 4-band sensor
    assert sensor.name == "naip"
    bands, waves, stats = select_bands(naip, sensor, card, allow_missing=False)
    assert bands == [1, 2, 3, 4] and stats.sensor == "naip"
    np.testing.assert_allclose(waves, [b.center_nm for b in get_sensor("naip").bands])
    s2 = _s2_raster(tmp_path / "s2.tif", size=16)
    bands, _, stats = select_bands(s2, input_sensor(s2, None, card), card, allow_missing=False)
    assert len(bands) == 13 and stats.sensor == "sentinel2_l1c"
    odd = write_geotiff(tmp_path / "odd.tif", np.ones((3, 16, 16), dtype=np.float32))
    with pytest.raises(BandMismatchError, match="odd.tif"):
        input_sensor(odd, None, card)
    unnormalised = ModelCard(sensors=card.sensors, stages=card.stages)  # stages alone
    assert input_sensor(naip, None, unnormalised).name == "naip"
    assert select_bands(naip, sensor, unnormalised, allow_missing=False)[0] == [1, 2, 3, 4]
    only_s2 = ModelCard(sensors={"sentinel2_l1c": card.sensors["sentinel2_l1c"]})
    with pytest.raises(BandMismatchError, match="lacks bands the model was trained with"):
        select_bands(naip, get_sensor("naip"), only_s2, allow_missing=False)  # fixed-band
    sar = write_geotiff(tmp_path / "s1.tif", np.ones((2, 16, 16), dtype=np.float32))
    with pytest.raises(BandMismatchError, match="none of its bands"):
        select_bands(sar, get_sensor("sentinel1_grd"), only_s2, allow_missing=False)

"""The typed model card: round trips, the shipped schema-1 card, facts lifted by push."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rasters import unit_stats
from torch import nn

import rsfm.hub as hub
from rsfm.band_stats import BandStats
from rsfm.hub.card import SCHEMA_VERSION, ModelCard, StageCard
from rsfm.hub.card_body import parse_card, render_card
from rsfm.hub.checkpoint_keys import BAND_STATS, MODEL_CONFIG, TASK, TaskFacts, TrainingStage
from rsfm.hub.commands import hub_main
from rsfm.hub.entry import sha256_file
from rsfm.models.registry import create_model, model_config
from rsfm.sensors import get_sensor

REPO = Path(__file__).resolve().parents[2]
HUB = REPO / "checkpoints"
DEFAULT = "smarties-tiny@1.0.0"
# smarties-tiny@1.0.0's encoder.forward_spatial on the input of _embedding_input (one intra-op
# thread): its sha256 as measured before the typed card existed (dc06c6b) on the machine of that
# session, and the array itself as this session's machine computes it (another CPU's kernels
# round differently in the last bits, so other machines compare within 1e-5).
EMBEDDING_SHA256 = "bd8df658bb3c2f4d558f9c3d664aae353f33b35c2dfb0f4a201d6a7b0534b43b"
EMBEDDING_FILE = Path(__file__).with_name("smarties_tiny_1_0_0_embedding.npy")
CLASSES = ["water", "forest", "crop", "urban"]
S2 = get_sensor("sentinel2_l1c")


def _facts() -> TaskFacts:
    return TaskFacts(
        task="segmentation",
        output="classes",
        class_names=CLASSES,
        ignore_index=-1,
        input_size=32,
        patch_size=8,
        stages=[
            TrainingStage(
                "pretraining",
                sensors={"naip": ["R", "G", "B", "N"], "sentinel2_l1c": S2.band_names},
            ),
            TrainingStage(
                "fine-tuning",
                sensors={"sentinel2_l1c": [n for n in S2.band_names if n != "B10"]},
                bad_bands={"sentinel2_l1c": ["B10"]},
                datasets=[{"name": "tiny-world", "files": ["a.tif"], "sha256": {"a.tif": "00"}}],
            ),
        ],
    )


def _seg_model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("smarties_tiny_seg_linear", num_outputs=len(CLASSES))


def _checkpoint(path: Path, model: nn.Module, facts: dict | None) -> Path:
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    ckpt = {"state_dict": state, MODEL_CONFIG: model_config(model), "global_step": 3}
    ckpt[BAND_STATS] = {s: unit_stats(s).to_dict() for s in ("sentinel2_l1c", "naip")}
    if facts is not None:
        ckpt[TASK] = facts
    torch.save(ckpt, path)
    return path


# ----------------------------------------------------------------------------- the type
def test_typed_card_round_trips_front_matter_and_text() -> None:
    config = {"name": "x", "class_path": "rsfm.models.finetune.FineTuneModel", "init_args": {}}
    stats = {s: unit_stats(s) for s in ("sentinel2_l1c", "naip")}
    card = ModelCard.build(
        config,
        {
            "name": "seg",
            "version": "1.0",
            **{k: v for k, v in vars(_facts()).items() if k != "extra"},
            "normalization": stats,
            "metrics": {"val/miou": 0.5},
        },
        n_parameters=10,
    )
    assert card.schema_version == SCHEMA_VERSION == 2
    assert card.pipeline_tag == "image-segmentation" and card.output == "classes"
    assert list(card.sensors) == ["sentinel2_l1c"]  # the last stage's sensors only
    assert "B10" not in card.sensors["sentinel2_l1c"].band_names
    assert card.stage("pretraining").sensors["naip"].bands[0].fwhm_nm == 32.0
    assert card.normalization["naip"] == stats["naip"]  # every sensor's statistics
    front = card.to_front_matter()
    assert front["pipeline_tag"] == "image-segmentation" and front["library_name"] == "rsfm"
    assert front["rsfm"]["schema_version"] == 2 and front["rsfm"]["class_names"] == CLASSES
    assert ModelCard.from_front_matter(front) == card
    json.dumps(front)  # plain data
    text = render_card(card, "seg@1.0")
    assert parse_card(text) == card
    body = text.split("\n---\n", 1)[1]
    assert "task: `segmentation`, default output: `classes`" in body
    assert "| 3 | urban |" in body and "### fine-tuning" in body
    assert "bad bands dropped: B10" in body and "dataset `tiny-world`: 1 file(s)" in body


def test_card_sections_that_do_not_parse_are_refused_naming_the_source() -> None:
    with pytest.raises(hub.HubError, match="x.md: the card front matter has no 'rsfm'"):
        ModelCard.from_front_matter({"license": "mit"}, "x.md")
    with pytest.raises(hub.HubError, match="card schema 3; .* upgrade rsfm"):
        ModelCard.from_front_matter({"rsfm": {"schema_version": 3}}, "x.md")
    with pytest.raises(ValueError, match="stage must be one of"):
        StageCard.from_dict({"stage": "warmup"})


# ----------------------------------------------------------------------------- schema 1
def test_shipped_schema_1_card_still_loads_and_is_unchanged() -> None:
    index = json.loads((HUB / "index.json").read_text())["entries"][DEFAULT]["files"]
    assert sha256_file(HUB / DEFAULT / "card.md") == index["card.md"]["sha256"]  # not rewritten
    card = hub.load_card(DEFAULT, HUB)
    assert isinstance(card, ModelCard) and card.schema_version == 1
    assert card.task == "pretraining (spectrum-aware masked autoencoder)"
    assert card.stages == [] and card.output is None and card.class_names is None
    assert list(card.sensors) == ["sentinel2_l1c", "landsat8_sr", "naip", "sentinel1_grd"]
    assert card.sensors["sentinel1_grd"].modality == "sar"
    assert isinstance(card.normalization["naip"], BandStats)
    assert len(card.normalization["sentinel2_l1c"].mean) == 13
    assert (card.input_size, card.patch_size, card.parameters) == (32, 8, 265568)
    assert card.training["global_step"] == 1728
    assert card.pipeline_tag == "image-feature-extraction"
    assert card.tags == ["synthetic-world", "tiny", "cpu"] and card.hf_tags[3] == "smarties"


def _embedding_input() -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.randn(2, 13, 32, 32, generator=torch.Generator().manual_seed(0))
    return image, torch.tensor([b.center_nm for b in S2.bands], dtype=torch.float32)


def test_embedded_default_gives_bit_identical_embeddings(monkeypatch: pytest.MonkeyPatch) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the measured hash is of one-thread kernels
    try:
        model = hub.load(DEFAULT, HUB)
        image, waves = _embedding_input()
        with torch.no_grad():
            features = model.encoder.forward_spatial(image, waves)
    finally:
        torch.set_num_threads(threads)
    assert features.shape == (2, 64, 4, 4) and features.dtype == torch.float32
    if hashlib.sha256(features.numpy().tobytes()).hexdigest() != EMBEDDING_SHA256:
        expected = torch.from_numpy(np.load(EMBEDDING_FILE))
        assert torch.allclose(features, expected, rtol=0, atol=1e-5)


# ----------------------------------------------------------------------------- push lifts
def test_push_checkpoint_lifts_the_task_facts_without_a_hand_passed_card(tmp_path: Path) -> None:
    model = _seg_model()
    ckpt = _checkpoint(tmp_path / "seg.ckpt", model, _facts().to_dict())
    hub.push_checkpoint(ckpt, "seg", "1.0", tmp_path / "hub")
    card = hub.load("seg", tmp_path / "hub").rsfm_card
    assert (card.task, card.output, card.class_names) == ("segmentation", "classes", CLASSES)
    assert (card.ignore_index, card.input_size, card.patch_size) == (-1, 32, 8)
    assert [s.stage for s in card.stages] == ["pretraining", "fine-tuning"]
    assert list(card.stage("fine-tuning").sensors) == ["sentinel2_l1c"]
    assert list(card.sensors) == ["sentinel2_l1c"]
    assert set(card.normalization) == {"sentinel2_l1c", "naip"}
    assert card.stage("fine-tuning").datasets[0]["sha256"] == {"a.tif": "00"}
    assert card.pipeline_tag == "image-segmentation"
    # A pushed component is a feature extractor; it keeps the stages and sizes.
    hub.push_checkpoint(ckpt, "seg-encoder", "1.0", tmp_path / "hub", component="encoder")
    part = hub.load_card("seg-encoder", tmp_path / "hub")
    assert (part.task, part.output, part.class_names) == ("feature-extraction", "embeddings", None)
    assert len(part.stages) == 2 and part.input_size == 32
    # Explicit card fields still override the lifted ones.
    hub.push_checkpoint(ckpt, "seg", "2.0", tmp_path / "hub", card={"class_names": list("abcd")})
    assert hub.load_card("seg@2.0", tmp_path / "hub").class_names == list("abcd")


def test_push_checkpoint_reads_older_flat_task_dicts(tmp_path: Path) -> None:
    legacy = {"task": "hyperspectral_segmentation", "binary": True, "class_names": CLASSES}
    ckpt = _checkpoint(tmp_path / "old.ckpt", _seg_model(), legacy)
    hub.push_checkpoint(ckpt, "old", "1.0", tmp_path / "hub")
    card = hub.load_card("old", tmp_path / "hub")
    assert (card.task, card.output, card.class_names) == ("segmentation", "classes", CLASSES)
    assert card.extra == {"binary": True} and card.stages == []
    assert list(card.sensors) == ["sentinel2_l1c", "naip"]  # no stages: the normalised sensors


class _FactsTask(nn.Module):
    """A task stand-in: its network under ``model`` and ``task_facts()`` (BaseTask's hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _seg_model()
        self.band_stats = {"sentinel2_l1c": unit_stats("sentinel2_l1c").to_dict()}

    def task_facts(self) -> TaskFacts:
        return _facts()


def test_push_of_a_task_object_uses_its_task_facts(tmp_path: Path) -> None:
    task = _FactsTask()
    hub.push(task, "from-task", "1.0", tmp_path)
    card = hub.load("from-task", tmp_path).rsfm_card
    assert (card.task, card.class_names, card.input_size) == ("segmentation", CLASSES, 32)
    assert list(card.stage("fine-tuning").sensors) == ["sentinel2_l1c"]
    assert list(card.normalization) == ["sentinel2_l1c"]
    folder = hub.save_pretrained(task, tmp_path / "folder")
    assert hub.load(folder, verify=False).rsfm_card.class_names == CLASSES


def test_bare_models_get_the_task_of_their_architecture(tmp_path: Path) -> None:
    hub.push(create_model("smarties_tiny").encoder, "enc", "1.0", tmp_path)
    assert hub.load_card("enc", tmp_path).task == "feature-extraction"
    hub.push(create_model("smarties_tiny"), "mae", "1.0", tmp_path)
    card = hub.load_card("mae", tmp_path)
    assert (card.task, card.output) == ("masked-image-modeling", "embeddings")


def test_hub_show_prints_task_classes_and_stages(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = _checkpoint(tmp_path / "seg.ckpt", _seg_model(), _facts().to_dict())
    hub.push_checkpoint(ckpt, "seg", "1.0", tmp_path / "hub")
    capsys.readouterr()
    assert hub_main(["show", "seg", "--hub", str(tmp_path / "hub")]) == 0
    out = capsys.readouterr().out
    assert "task segmentation   output classes" in out
    assert f"classes   {', '.join(CLASSES)}" in out
    assert "stage     pretraining: naip, sentinel2_l1c" in out
    assert "stage     fine-tuning: sentinel2_l1c" in out
    assert hub_main(["show", "seg", "--hub", str(tmp_path / "hub"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pipeline_tag"] == "image-segmentation"


def test_a_loaded_model_pushed_again_keeps_its_card(tmp_path: Path) -> None:
    """``push(load(entry))`` keeps the task, class names, sensors, stages and statistics (it
    wrote a bare feature-extraction card)."""
    model = hub.load("water-s2-tiny")
    hub.push(model, "water-copy", "1.0", tmp_path)
    again = hub.load("water-copy@1.0", hub=tmp_path).rsfm_card
    before, after = model.rsfm_card.to_front_matter(), again.to_front_matter()
    assert after["rsfm"]["task"] == "segmentation" and after["pipeline_tag"] == "image-segmentation"
    for key in before["rsfm"]:
        if key not in ("name", "version"):
            assert after["rsfm"][key] == before["rsfm"][key], key
    override = hub.push(model, "water-copy", "1.1", tmp_path, card={"metrics": {"x": 1.0}})
    assert hub.load_card(str(override), hub=tmp_path).metrics == {"x": 1.0}

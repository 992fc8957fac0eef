"""BaseTask owns the checkpoint contract: keys, task facts per stage, resolved hyperparameters."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from jsonargparse import ArgumentParser

from rsfm.band_stats import BandStats
from rsfm.data.datamodules.base import BaseDataModule, DataFacts
from rsfm.data.datamodules.labelled import LabelledGeoDataModule
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.hub.checkpoint_keys import BAND_STATS, EMA_STEP, MODEL_CONFIG, TASK, TaskFacts
from rsfm.models import model_from_config
from rsfm.models.finetune import FineTuneModel
from rsfm.sensors import get_sensor
from rsfm.tasks.base import BaseTask, resolved_parameter_names
from rsfm.tasks.classification import ClassificationTask
from rsfm.tasks.finetune import FineTuneTask
from rsfm.tasks.mae import MAEPretrainTask
from rsfm.tasks.regression import RegressionTask
from rsfm.tasks.segmentation import SegmentationTask

REPO = Path(__file__).resolve().parents[2]
TASKS_DIR = REPO / "rsfm" / "tasks"
TINY_WORLD = SyntheticWorldConfig(seed=0, n_scenes=3, scene_size_m=960)
S2_BANDS = get_sensor("sentinel2_l1c").band_names
OPTIMISER_ARGS = (
    "optimizer",
    "lr",
    "base_lr",
    "weight_decay",
    "betas",
    "warmup_epochs",
    "min_lr",
    "scheduler",
)


# ----------------------------------------------------------------------------- one owner
def test_only_base_task_writes_the_checkpoint_keys() -> None:
    """No task outside base.py (and the EMA mixin's step) spells a key or a checkpoint hook."""
    keys = {MODEL_CONFIG, BAND_STATS, TASK, EMA_STEP}
    offenders = []
    for path in sorted(TASKS_DIR.glob("*.py")):
        if path.name in ("base.py", "ema.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in keys:
                offenders.append(f"{path.name}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.FunctionDef) and node.name in (
                "on_save_checkpoint",
                "on_load_checkpoint",
            ):
                offenders.append(f"{path.name}:{node.lineno} def {node.name}")
            if (  # the band-statistics handshake is typed (BaseDataModule), not duck typed
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "hasattr"
                and any(
                    isinstance(a, ast.Constant) and "band_stats" in str(a.value) for a in node.args
                )  # fmt: skip
            ):
                offenders.append(f"{path.name}:{node.lineno} hasattr(..., band_stats)")
    assert not offenders, offenders
    ema = (TASKS_DIR / "ema.py").read_text()
    assert '"rsfm_ema_step"' not in ema and "EMA_STEP" in ema


def test_every_task_records_its_kind_and_output_in_the_checkpoint() -> None:
    """The facts each task kind writes without data: kind, output, class names, patch size."""
    from rsfm.tasks.hyperspectral import HyperspectralSegmentationTask

    cases = [
        (MAEPretrainTask(), "masked-image-modeling", "embeddings"),
        (SegmentationTask(num_classes=3), "segmentation", "classes"),
        (ClassificationTask(num_classes=3, multilabel=True), "multilabel", "classes"),
        (RegressionTask(), "regression", "values"),
        (HyperspectralSegmentationTask(), "segmentation", "classes"),
    ]
    for task, kind, output in cases:
        checkpoint: dict = {"state_dict": {}}
        task.on_save_checkpoint(checkpoint)
        facts = TaskFacts.from_dict(checkpoint[TASK])
        assert (facts.task, facts.output) == (kind, output), type(task).__name__
        assert checkpoint[MODEL_CONFIG]["class_path"]
        assert facts.stages == []  # nothing seen yet: no stage claimed
    seg = SegmentationTask(num_classes=3)
    assert seg.task_facts().ignore_index == -1 and seg.task_facts().patch_size == 8


# ----------------------------------------------------------------------------- stages
def _unit_stats(sensor: str) -> BandStats:
    bands = get_sensor(sensor)
    n = len(bands.band_names)
    return BandStats(bands.band_names, bands.wavelengths, [0.0] * n, [1e4] * n, [0.0] * n,
                     [1.0] * n, sensor=sensor)  # fmt: skip


def _pretrained_checkpoint(path: Path) -> Path:
    """An MAE checkpoint whose task saw Sentinel-2 and Sentinel-1 (written by BaseTask)."""
    mae = MAEPretrainTask(model="smarties_tiny")
    mae.band_stats = {  # statistics of both sensors travel with the weights, as on a hub card
        name: _unit_stats(name).to_dict() for name in ("sentinel2_l1c", "sentinel1_grd")
    }
    mae.data_facts = DataFacts(
        sensors={"sentinel2_l1c": list(S2_BANDS), "sentinel1_grd": ["VV", "VH"]},
        input_size=32,
        datasets=[{"name": "pretraining-world", "files": ["a.tif"], "sha256": {}}],
    )
    checkpoint = {"state_dict": {f"model.{k}": v for k, v in mae.model.state_dict().items()}}
    mae.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


def test_fine_tuning_records_only_the_sensors_it_was_fed(tmp_path: Path) -> None:
    """A Sentinel-2 head on an S1+S2 encoder: two stages, the fine-tuning one S2 only."""
    weights = _pretrained_checkpoint(tmp_path / "mae.ckpt")
    pl.seed_everything(0)
    task = SegmentationTask(
        model="smarties_tiny_seg_linear", num_classes=7, weights=str(weights), lr=1e-3
    )
    data = LabelledGeoDataModule(
        synthetic=TINY_WORLD, patch_size=32, batch_size=8, samples_per_epoch=16, val_samples=8,
        stats_samples=16,
    )  # fmt: skip
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=1, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(task, datamodule=data)
    trainer.save_checkpoint(tmp_path / "seg.ckpt")
    saved = torch.load(tmp_path / "seg.ckpt", map_location="cpu", weights_only=True)
    facts = TaskFacts.from_dict(saved[TASK])
    assert [s.stage for s in facts.stages] == ["pretraining", "fine-tuning"]
    assert set(facts.stage("pretraining").sensors) == {"sentinel2_l1c", "sentinel1_grd"}
    tuned = facts.stage("fine-tuning")
    assert tuned.sensors == {"sentinel2_l1c": list(S2_BANDS)}
    assert tuned.datasets and tuned.datasets[0]["sha256"]  # the tiny world's files, hashed
    assert facts.class_names == data.class_names and facts.class_names[0] == "water"
    assert (facts.input_size, facts.ignore_index) == (32, -1)
    assert facts.extra["weights"] == str(weights)
    assert set(saved[BAND_STATS]) == {"sentinel2_l1c", "sentinel1_grd"}  # normalisation: both
    # Loading restores the facts; a later push without data still has both stages.
    restored = SegmentationTask(model="smarties_tiny_seg_linear", num_classes=7)
    restored.on_load_checkpoint(saved)
    assert restored.task_facts().stages == facts.stages
    assert restored.class_names == data.class_names


def test_cli_twin_checkpoint_carries_facts_and_resolved_hparams(tmp_path: Path) -> None:
    """``rsfm fit`` on the segmentation twin: recipe, statistics, facts and every setting."""
    config = REPO / "tests" / "conf" / "finetune_segmentation.yaml"
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "rsfm.cli", "fit", "--config", str(config),
         "--trainer.default_root_dir", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    ckpts = sorted(tmp_path.rglob("last.ckpt"))
    assert ckpts
    ckpt = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 * (32 // 8)
    assert ckpt[MODEL_CONFIG]["name"] == "smarties_tiny_seg_upernet"
    assert len(ckpt[BAND_STATS]["sentinel2_l1c"]["mean"]) == 13
    facts = TaskFacts.from_dict(ckpt[TASK])
    assert (facts.task, facts.output, facts.class_names[0]) == ("segmentation", "classes", "water")
    assert [s.stage for s in facts.stages] == ["fine-tuning"]  # no pretrained weights given
    assert list(facts.stage("fine-tuning").sensors) == ["sentinel2_l1c"]
    hparams = ckpt["hyper_parameters"]
    assert hparams["weight_decay"] == 0.05 and hparams["lora_rank"] == 8  # resolved defaults
    assert "num_outputs" not in hparams
    rebuilt = model_from_config(ckpt[MODEL_CONFIG])
    assert isinstance(rebuilt, FineTuneModel)
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items()}
    rebuilt.load_state_dict(state)
    metrics = (next(tmp_path.rglob("metrics.csv"))).read_text()
    assert "val/miou" in metrics and "train/loss" in metrics


# ----------------------------------------------------------------------------- arguments once
def test_hparams_record_every_resolved_argument() -> None:
    """Built with two arguments, the task still records every setting of its chain."""
    task = SegmentationTask(model="smarties_tiny_seg_upernet", num_classes=7)
    hparams = dict(task.hparams)
    assert hparams["lr"] is None and hparams["weight_decay"] == 0.05
    assert hparams["mode"] == "frozen" and hparams["base_lr"] == 1e-3
    assert set(OPTIMISER_ARGS) <= set(hparams) and "num_outputs" not in hparams
    assert SegmentationTask(**hparams).hparams == task.hparams  # load_from_checkpoint's path
    probe = ClassificationTask(num_classes=3, weight_decay=0.0)
    assert probe.hparams["mode"] == "linear_probe" and probe.hparams["weight_decay"] == 0.0
    assert MAEPretrainTask().hparams["betas"] == (0.9, 0.95)  # the task's own defaults


def test_tasks_state_only_their_own_arguments() -> None:
    """Subclasses pass the rest by keyword; jsonargparse still resolves the whole chain."""
    import inspect

    for cls in (SegmentationTask, ClassificationTask, RegressionTask, FineTuneTask):
        own = inspect.signature(cls.__init__).parameters
        assert "kwargs" in own and not set(OPTIMISER_ARGS) & set(own), cls
    names = resolved_parameter_names(SegmentationTask)
    finetune = set(inspect.signature(FineTuneTask.__init__).parameters) - {"self", "kwargs"}
    assert finetune - {"num_outputs"} <= names and set(OPTIMISER_ARGS) <= names
    assert "num_outputs" not in names  # SegmentationTask sets it from num_classes
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(SegmentationTask, "model")
    parsed = parser.parse_object({"model": {"num_classes": 3, "lr": 0.1}})
    assert parsed.model.lr == 0.1 and parsed.model.weight_decay == 0.05
    with pytest.raises(Exception, match="bogus"):
        parser.parse_object({"model": {"bogus": 1}})


def test_base_task_setup_ignores_datamodules_outside_the_contract() -> None:
    """Only BaseDataModule instances take part in the band-statistics handshake."""
    assert issubclass(LabelledGeoDataModule, BaseDataModule)
    task = SegmentationTask(num_classes=7)
    task.setup("fit")  # no trainer: nothing to record
    assert task.data_facts is None and task.band_stats is None
    assert isinstance(task, BaseTask)


def test_weights_from_the_hub_bring_their_pretraining_stage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """smarties-tiny@1.0.0 (a schema-1 card): its sensors become the pretraining stage."""
    task = SegmentationTask(
        model="smarties_tiny_seg_linear", num_classes=7, weights="smarties-tiny@1.0.0"
    )
    (stage,) = task.task_facts().stages  # no data yet: no fine-tuning stage claimed
    assert stage.stage == "pretraining"
    assert set(stage.sensors) == {"sentinel2_l1c", "sentinel1_grd", "landsat8_sr", "naip"}
    assert stage.sensors["sentinel1_grd"] == ["VV", "VH"]

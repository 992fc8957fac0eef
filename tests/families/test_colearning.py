"""Multi-modal co-learning: model parts, losses, paired labelled data, training, hub, tiling."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
import yaml

import rsfm.hub
from rsfm.band_stats import BandStats
from rsfm.cli import main as cli_main
from rsfm.data.datamodules.multimodal import MultiModalDataModule
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.world import ensure_synthetic_world, scene_files
from rsfm.inference import tile_raster
from rsfm.models import create_model, model_config, model_from_config
from rsfm.sensors import get_sensor

REPO = Path(__file__).resolve().parents[2]
CONF = REPO / "tests" / "conf"
TINY_WORLD = SyntheticWorldConfig(seed=0, n_scenes=3, scene_size_m=960)
S2 = torch.as_tensor(get_sensor("sentinel2_l1c").wavelengths, dtype=torch.float32)
S1 = torch.as_tensor(get_sensor("sentinel1_grd").wavelengths, dtype=torch.float32)


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread: tiny models on two busy cores run far faster single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TERMS = ("main", "auxiliary", "contrastive", "discriminative")  # every default weight: 1


@pytest.fixture(scope="module")
def co() -> SimpleNamespace:
    """The co-learning model and task API (one namespace for the tests below)."""
    from rsfm.models import colearning as models
    from rsfm.tasks import colearning as tasks

    return SimpleNamespace(
        Model=models.CoLearningModel,
        TempCNN=models.TempCNNEncoder,
        window_predict_fn=models.window_predict_fn,
        Task=tasks.CoLearningTask,
        nt_xent=tasks.nt_xent,
    )


def _inputs(batch: int = 4, size: int = 16, seed: int = 0) -> dict[str, tuple]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "s2": (torch.randn(batch, len(S2), size, size, generator=generator), S2),
        "s1": (torch.randn(batch, len(S1), size, size, generator=generator), S1),
    }


def _trainer(tmp_path: Path, **kwargs) -> pl.Trainer:
    args = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        default_root_dir=tmp_path,
    )
    return pl.Trainer(**{**args, **kwargs})


# ----------------------------------------------------------------------------- model
def test_parts_split_specific_and_project_shared(co: SimpleNamespace) -> None:
    model = create_model("colearn_tiny_s1s2").eval()
    inputs = _inputs()
    parts = model.encode(inputs)
    assert model.feature_dim == 32 and model.modality_names == ["s2", "s1"]
    for name, (image, waves) in inputs.items():
        full = model.specific_encoders[name](image, waves)  # [B, 64]
        assert torch.equal(parts[name]["specific"], full[:, :32])
        assert torch.equal(parts[name]["unused"], full[:, 32:])
        shared = model.shared_projections[name](model.shared_encoders[name](image, waves))
        assert torch.equal(parts[name]["shared"], shared)
        assert parts[name]["shared"].shape == (4, 32) and (parts[name]["shared"] >= 0).all()
    out = model.heads(parts)
    assert {k: tuple(v["s1"].shape) for k, v in out.items()} == {
        "logits": (4, 7),
        "aux_specific": (4, 7),
        "aux_shared": (4, 7),
        "modality_specific": (4, 2),
        "modality_unused": (4, 2),
        "specific": (4, 32),
        "shared": (4, 32),
    }
    auxiliary = model.auxiliary_head
    assert torch.equal(out["aux_shared"]["s2"], auxiliary(parts["s2"]["shared"]))


def test_any_subset_predicts_by_averaging_shared_parts(co: SimpleNamespace) -> None:
    model = create_model("colearn_tiny_s1s2").eval()
    inputs = _inputs()
    with torch.no_grad():
        parts = model.encode(inputs)
        mean_shared = (parts["s2"]["shared"] + parts["s1"]["shared"]) / 2
        expected = torch.stack(
            [
                model.main_heads[n](torch.cat([parts[n]["specific"], mean_shared], dim=1))
                for n in ("s2", "s1")
            ]
        ).mean(dim=0)
        torch.testing.assert_close(model.predict(inputs), expected)
        s1_alone = model.main_heads["s1"](
            torch.cat([parts["s1"]["specific"], parts["s1"]["shared"]], 1)
        )
        torch.testing.assert_close(model.predict({"s1": inputs["s1"]}), s1_alone)
        # forward() recognises the modality from the wavelengths (missing-modality inference)
        torch.testing.assert_close(model(*inputs["s1"]), s1_alone)
        assert model.modality_of(S2) == "s2" and model.modality_of(S1.expand(3, 2)) == "s1"
        assert not torch.allclose(model.predict(inputs), s1_alone)
    with pytest.raises(KeyError, match="unknown modalities"):
        model.encode({"s3": inputs["s1"]})
    with pytest.raises(ValueError, match="pass the modality"):
        model.modality_of(torch.tensor([442.7, 55465764.0]))


def test_registered_variants_round_trip_and_baseline_is_one_branch(co: SimpleNamespace) -> None:
    for name in ("colearn_tiny_s1s2", "colearn_tiny_s1", "colearn_tiny_s2"):
        model = create_model(name)
        rebuilt = model_from_config(json.loads(json.dumps(model_config(model))))
        rebuilt.load_state_dict(model.state_dict())
        assert rebuilt.init_args == model.init_args and rebuilt.model_name == name
    pair, alone = create_model("colearn_tiny_s1s2"), create_model("colearn_tiny_s1")
    s1_branch = {k: v.shape for k, v in pair.state_dict().items() if ".s1." in f".{k}"}
    baseline = {k: v.shape for k, v in alone.state_dict().items() if ".s1." in f".{k}"}
    assert s1_branch == baseline  # the same encoders and main head as the co-learned branch
    with pytest.raises(ValueError, match="one output size"):
        co.Model(
            {
                "a": {"encoder": "smarties_tiny"},
                "b": {"encoder": "tempcnn_s1_series", "encoder_args": {"embed_dim": 32}},
            }
        )


def test_image_and_time_series_modalities_train_together(co: SimpleNamespace) -> None:
    model = co.Model(
        {"s2": {"encoder": "smarties_tiny"}, "s1_series": {"encoder": "tempcnn_s1_series"}},
        num_outputs=3,
    )
    series = torch.randn(6, 2, 12)
    inputs = {"s2": (torch.randn(6, len(S2), 16, 16), S2), "s1_series": (series, S1)}
    out = model.forward_train(inputs)
    assert out["logits"]["s1_series"].shape == (6, 3) and out["shared"]["s2"].shape == (6, 32)
    loss = sum(v.square().mean() for v in out["logits"].values())
    loss.backward()
    assert model.specific_encoders["s1_series"].convolutions[0].weight.grad.abs().sum() > 0
    assert model.shared_encoders["s2"].encoder.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="TempCNN expects"):
        co.TempCNN(in_channels=2, seq_len=12)(torch.randn(2, 2, 10))


def test_one_shared_encoder_serves_every_modality(co: SimpleNamespace) -> None:
    model = co.Model(
        {"s2": {"encoder": "smarties_tiny"}, "s1": {"encoder": "smarties_tiny"}},
        one_shared_encoder=True,
    )
    separate = co.Model({"s2": {"encoder": "smarties_tiny"}, "s1": {"encoder": "smarties_tiny"}})
    assert model.shared_encoders["s2"] is model.shared_encoders["s1"]
    encoder_size = sum(p.numel() for p in model.shared_encoders["s1"].parameters())
    count = sum(p.numel() for p in model.parameters())
    assert count == sum(p.numel() for p in separate.parameters()) - encoder_size
    out = model.forward_train(_inputs())
    (out["shared"]["s1"].sum() + out["shared"]["s2"].sum()).backward()
    assert model.shared_encoders["s1"].encoder.blocks[0].mlp.fc1.weight.grad.abs().sum() > 0
    rebuilt = model_from_config(model_config(model))
    assert rebuilt.shared_encoders["s2"] is rebuilt.shared_encoders["s1"]
    with pytest.raises(ValueError, match="same encoder"):
        co.Model(
            {"a": {"encoder": "smarties_tiny"}, "b": {"encoder": "smarties_tiny", "pool": "cls"}},
            one_shared_encoder=True,
        )


# ----------------------------------------------------------------------------- losses
def test_nt_xent_is_symmetric_infonce(co: SimpleNamespace) -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 16, generator=generator), torch.randn(8, 16, generator=generator)
    an, bn = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    logits = an @ bn.T / 0.5
    row = -(logits.diag() - logits.logsumexp(dim=1)).mean()
    col = -(logits.diag() - logits.logsumexp(dim=0)).mean()
    torch.testing.assert_close(co.nt_xent(a, b, 0.5), (row + col) / 2)
    torch.testing.assert_close(co.nt_xent(a, b, 0.5), co.nt_xent(b, a, 0.5))
    assert float(co.nt_xent(a, 3 * a, 0.05)) < 1e-3  # aligned views: the positives win
    assert float(co.nt_xent(a, b, 10.0)) == pytest.approx(np.log(8), abs=0.05)  # uninformative


def test_loss_terms_follow_their_weights(co: SimpleNamespace) -> None:
    torch.manual_seed(0)
    task = co.Task(loss_weights={"auxiliary": 0.5, "contrastive": 2.0, "discriminative": 0.25})
    out = task.model.forward_train(_inputs())
    target = torch.tensor([0, 1, 2, 3])
    terms = task.losses(out, target)
    ce = torch.nn.functional.cross_entropy
    main = (ce(out["logits"]["s2"], target) + ce(out["logits"]["s1"], target)) / 2
    torch.testing.assert_close(terms["main"], main)
    modality = torch.zeros(4, dtype=torch.long)
    s2_disc = (
        ce(out["modality_specific"]["s2"], modality) + ce(out["modality_unused"]["s2"], modality)
    ) / 2
    s1_disc = (
        ce(out["modality_specific"]["s1"], 1 - modality)
        + ce(out["modality_unused"]["s1"], 1 - modality)
    ) / 2
    torch.testing.assert_close(terms["discriminative"], (s2_disc + s1_disc) / 2)
    torch.testing.assert_close(
        terms["contrastive"], co.nt_xent(out["shared"]["s2"], out["shared"]["s1"], 0.1)
    )
    expected = (
        main
        + 0.5 * terms["auxiliary"]
        + 2.0 * terms["contrastive"]
        + 0.25 * terms["discriminative"]
    )
    torch.testing.assert_close(terms["loss"], expected)
    off = co.Task(loss_weights={"auxiliary": 0, "contrastive": 0, "discriminative": 0})
    assert set(off.losses(out, target)) == {"main", "loss"}
    alone = co.Task(model="colearn_tiny_s1")
    assert set(alone.losses(alone.model.forward_train({"s1": _inputs()["s1"]}), target)) == {
        "main",
        "auxiliary",
        "loss",
    }
    with pytest.raises(ValueError, match="unknown loss_weights"):
        co.Task(loss_weights={"contrast": 1.0})


def test_unlabelled_pairs_train_only_the_label_free_terms(co: SimpleNamespace) -> None:
    torch.manual_seed(0)
    task = co.Task()
    task.batch_keys = {
        "s2": {"image": "image", "wavelengths": "wavelengths"},
        "s1": {"image": "pair_image", "wavelengths": "pair_wavelengths"},
    }
    inputs = _inputs(batch=6)
    label = torch.tensor([3, -1, 0, -1, -1, 5])  # -1: an unlabelled pair
    batch = {
        "image": inputs["s2"][0],
        "wavelengths": S2.expand(6, -1),
        "pair_image": inputs["s1"][0],
        "pair_wavelengths": S1.expand(6, -1),
        "label": label,
    }
    task.eval()  # no dropout / batch-norm updates: the same outputs twice
    with torch.no_grad():
        losses, parts, target, size = task._step(batch)
        out = task.model.forward_train(inputs)
    known = label >= 0
    ce = torch.nn.functional.cross_entropy
    main = (
        ce(out["logits"]["s2"][known], label[known]) + ce(out["logits"]["s1"][known], label[known])
    ) / 2
    torch.testing.assert_close(losses["main"], main)
    # the contrastive term uses all six pairs, labelled or not
    torch.testing.assert_close(
        losses["contrastive"], co.nt_xent(out["shared"]["s2"], out["shared"]["s1"], 0.1)
    )
    assert size == 3 and target.tolist() == [3, 0, 5] and parts["s1"]["shared"].shape == (3, 32)
    torch.testing.assert_close(parts["s1"]["shared"], out["shared"]["s1"][known])
    with torch.no_grad():  # a batch of unlabelled pairs: only the label-free terms
        unlabelled = task._step({**batch, "label": torch.full((6,), -1)})
    assert unlabelled is not None and set(unlabelled[0]) == {
        "contrastive",
        "discriminative",
        "loss",
    }
    assert unlabelled[3] == 0
    alone = co.Task(model="colearn_tiny_s1", batch_keys={"s1": task.batch_keys["s1"]})
    assert alone._step({**batch, "label": torch.full((6,), -1)}) is None  # nothing to learn
    losses, _, target, size = alone._step(batch)  # the unlabelled rows are dropped
    assert size == 3 and set(losses) == {"main", "auxiliary", "loss"}
    multilabel = co.Task(task_type="multilabel")
    hot = torch.tensor([[1.0, 0, 0, 0, 0, 0, 1], [float("nan")] * 7])
    assert multilabel.targets({"label": hot})[1].tolist() == [True, False]


def test_pretrained_encoder_weights_fill_both_encoders_of_a_modality(
    co: SimpleNamespace, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(1)
    mae = create_model("smarties_tiny")
    path = tmp_path / "mae.safetensors"
    save_file({k: v.contiguous() for k, v in mae.state_dict().items()}, str(path))
    task = co.Task(weights={"s1": str(path)})
    reference = mae.encoder.state_dict()
    for encoders in (task.model.specific_encoders, task.model.shared_encoders):
        loaded = encoders["s1"].encoder.state_dict()
        assert all(torch.equal(loaded[k], reference[k]) for k in reference)
        other = encoders["s2"].encoder.state_dict()  # the other modality keeps its own init
        assert not torch.equal(
            other["blocks.0.attn.qkv.weight"], reference["blocks.0.attn.qkv.weight"]
        )
    with pytest.raises(ValueError, match="unknown modality"):
        co.Task(weights={"s3": str(path)})


# ----------------------------------------------------------------------------- data
def _datamodule(**overrides) -> MultiModalDataModule:
    args = dict(
        synthetic=TINY_WORLD,
        patch_size=16,
        batch_size=8,
        samples_per_epoch=32,
        val_samples=16,
        stats_samples=16,
    )
    return MultiModalDataModule(**{**args, **overrides})


def test_paired_windows_carry_both_sensors_and_the_majority_class() -> None:
    data = _datamodule()
    data.prepare_data()
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape == (8, 13, 16, 16) and batch["pair_image"].shape == (8, 2, 16, 16)
    torch.testing.assert_close(batch["pair_wavelengths"][0], S1)
    assert data.modality_keys["s1"] == {
        "image": "pair_image",
        "wavelengths": "pair_wavelengths",
        "valid": "pair_valid",
    }
    for mask, label in zip(batch["mask"], batch["label"], strict=True):
        counts = torch.bincount(mask[mask >= 0], minlength=7)
        assert int(label) == int(counts.argmax())
    # both sensors are normalised with their own statistics (VV/VH in dB end up near 0 +- 1)
    assert set(data.band_stats) == {"sentinel2_l1c", "sentinel1_grd"}
    assert (
        abs(float(batch["pair_image"].mean())) < 1.5 and 0.3 < float(batch["pair_image"].std()) < 3
    )
    # the same places: the S1 window is the S1 raster read on the S2 window's grid
    root = ensure_synthetic_world(config=TINY_WORLD)
    stats = BandStats.from_dict(data.band_stats["sentinel1_grd"].to_dict())
    left, bottom, right, top = batch["bounds"][0]
    val_s1 = scene_files(root, "sentinel1_grd")[-1]
    with rasterio.open(val_s1) as src:
        window = rasterio.windows.from_bounds(left, bottom, right, top, src.transform)
        raw = torch.from_numpy(src.read(window=window.round_offsets().round_lengths()))
    torch.testing.assert_close(
        batch["pair_image"][0], stats.normalize(raw, S1), rtol=1e-4, atol=1e-4
    )


def test_single_modality_and_regression_windows() -> None:
    alone = _datamodule(synthetic_modalities={"s1": "sentinel1_grd"})
    alone.setup("fit")
    batch = next(iter(alone.train_dataloader()))
    assert batch["image"].shape[1] == 2 and "pair_image" not in batch
    assert alone.modality_keys == {
        "s1": {"image": "image", "wavelengths": "wavelengths", "valid": "valid"}
    }
    regression = _datamodule(task="regression")
    regression.prepare_data()
    regression.setup("fit")
    batch = next(iter(regression.val_dataloader()))
    assert batch["target"].shape == (8, 16, 16)
    finite = batch["target"][torch.isfinite(batch["target"])]
    assert finite.numel() > 0 and finite.min() >= 0 and finite.max() <= 1
    with pytest.raises(ValueError, match="one or two modalities"):
        MultiModalDataModule(synthetic_modalities={"a": "naip", "b": "naip", "c": "naip"})


def test_few_labelled_windows_with_many_unlabelled_pairs(co: SimpleNamespace) -> None:
    data = _datamodule(
        labelled_windows=16, unlabelled_windows=40, unlabelled_batch_size=12, batch_size=8
    )
    data.prepare_data()
    data.setup("fit")
    loader = data.train_dataloader()
    epochs = [list(loader) for _ in range(2)]
    assert [len(e) for e in epochs] == [2, 2]  # 16 labelled windows / 8 per batch
    for batch in epochs[0]:
        assert batch["image"].shape == (20, 13, 16, 16) and batch["pair_image"].shape[0] == 20
        assert (batch["label"][:8] >= 0).all() and (batch["label"][8:] == -1).all()
        assert (batch["mask"][8:] == -1).all() and (batch["mask"][:8] >= 0).any()
    # the labelled set is fixed: the same 16 places every epoch (in another order)
    places = [sorted(tuple(b) for batch in e for b in batch["bounds"][:8]) for e in epochs]
    assert places[0] == places[1] and len(set(places[0])) == 16
    assert places[0] != [tuple(b) for batch in epochs[0] for b in batch["bounds"][:8]]
    for epoch in epochs:  # 24 distinct draws from the pool of 40 other places
        unlabelled = [tuple(b) for batch in epoch for b in batch["bounds"][8:]]
        assert len(set(unlabelled)) == 24 and not set(unlabelled) & set(places[0])
    with pytest.raises(ValueError, match="two modalities"):
        _datamodule(synthetic_modalities={"s1": "sentinel1_grd"}, unlabelled_windows=8)


def test_cli_fit_with_unlabelled_pairs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = CONF / "colearning_few_labels.yaml"
    assert (
        cli_main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path)]) == 0
    )
    rows = (next(tmp_path.rglob("metrics.csv"))).read_text().splitlines()
    header = rows[0].split(",")
    steps = [dict(zip(header, r.split(","), strict=True)) for r in rows[1:]]
    trained = [r for r in steps if r.get("train/contrastive")]
    assert len(trained) == 2  # 8 labelled windows in batches of 4 (+ 8 unlabelled pairs each)
    for row in trained:  # every weight is 1 by default: the loss is the sum of the terms
        total = sum(float(row[f"train/{t}"]) for t in TERMS)
        assert float(row["train/loss"]) == pytest.approx(total, rel=1e-5), row
        # Two steps in, the 7-class head is still near chance: cross-entropy ~ log 7 (measured
        # 2.07 and 2.13).
        assert abs(float(row["train/main"]) - math.log(7)) < 0.5, row
    assert any(r.get("val/s1/accuracy") for r in steps)


def test_labelled_unlabelled_batch_sampler_visits_each_labelled_index_once() -> None:
    from rsfm.data.datamodules.multimodal import LabelledUnlabelledBatchSampler

    sampler = LabelledUnlabelledBatchSampler(10, 5, 3, 4, seed=1)
    first, second = list(sampler), list(sampler)
    assert len(sampler) == 3 and all(len(b) == 7 for b in first)
    labelled = [i for b in first for i in b[:3]]
    assert len(set(labelled)) == 9 and max(labelled) < 10  # one dropped: no partial batch
    pool = [i for b in first for i in b[3:]]
    assert all(10 <= i < 15 for i in pool) and sorted(pool[:5]) == list(range(10, 15))
    assert first != second  # reshuffled every epoch, reproducibly from the seed
    assert list(LabelledUnlabelledBatchSampler(10, 5, 3, 4, seed=1)) == first
    with pytest.raises(ValueError, match="cannot fill"):
        LabelledUnlabelledBatchSampler(2, 5, 3, 4)


@pytest.mark.parametrize("task_type", ["multilabel", "regression"])
def test_multilabel_and_regression_train_a_step(
    co: SimpleNamespace, task_type: str, tmp_path: Path
) -> None:
    data = _datamodule(task=task_type, samples_per_epoch=16, val_samples=8)
    pl.seed_everything(0)
    outputs = 1 if task_type == "regression" else 7
    task = co.Task(num_outputs=outputs, task_type=task_type, lr=1e-3, warmup_epochs=0)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(task, datamodule=data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    names = ["map", "f1"] if task_type == "multilabel" else ["r2", "rmse"]
    for prefix in ("val/", "val/s2/", "val/s1/"):
        assert all(np.isfinite(metrics[prefix + n]) for n in names)
    total = sum(metrics[f"train/{t}"] for t in TERMS)  # default weights: all 1
    assert metrics["train/loss"] == pytest.approx(total, rel=1e-5), metrics


# ----------------------------------------------------------------------------- CLI, hub, tiles
def test_cli_fit_then_hub_push_load_and_tile_one_modality(
    co: SimpleNamespace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = CONF / "colearning_quickstart.yaml"
    assert (
        cli_main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path)]) == 0
    )
    checkpoint = sorted(tmp_path.rglob("last.ckpt"))[0]
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 2 * (32 // 8)
    assert saved["rsfm_model_config"]["name"] == "colearn_tiny_s1s2"
    assert saved["rsfm_task"]["class_names"][0] == "water"
    assert saved["rsfm_task"]["extra"]["batch_keys"]["s1"]["image"] == "pair_image"
    assert saved["rsfm_task"]["task"] == "co-learning"
    assert len(saved["rsfm_band_stats"]["sentinel1_grd"]["mean"]) == 2
    metrics = (next(tmp_path.rglob("metrics.csv"))).read_text()
    for column in ("train/contrastive", "train/discriminative", "val/s1/accuracy", "val/s2/f1"):
        assert column in metrics

    task = co.Task.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    hub = tmp_path / "hub"
    rsfm.hub.push(task, "colearn-s1s2", hub=hub)  # task facts lifted from task.task_facts()
    model = rsfm.hub.load("colearn-s1s2", hub=hub)
    card = model.rsfm_card
    assert card.output == "classes" and card.class_names[0] == "water"
    assert set(card.normalization) == {
        "sentinel2_l1c",
        "sentinel1_grd",
    }
    for key, value in task.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)

    # S1 alone over a whole scene: sliding-window class probabilities, blended, georeferenced
    world = ensure_synthetic_world(config=TINY_WORLD)
    scene = scene_files(world, "sentinel1_grd")[-1]
    stats = card.normalization["sentinel1_grd"]
    out = tmp_path / "s1_classes.tif"
    tile_raster(
        co.window_predict_fn(model, S1.numpy()),
        scene,
        out,
        tile_size=32,
        overlap=16,
        output="probabilities",
        normalize=lambda image: stats.normalize(image, S1),
        num_classes=7,
        progress=False,
    )
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.count == 7
        probabilities = dst.read()
        raw = torch.from_numpy(src.read(window=rasterio.windows.Window(0, 0, 32, 32)))
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=2e-3)
    with torch.no_grad():  # the top-left tile holds that window's own prediction
        alone = model.predict({"s1": (stats.normalize(raw, S1)[None], S1)}).softmax(dim=1)[0]
    np.testing.assert_allclose(probabilities[:, 2, 2], alone.numpy(), atol=2e-2)

    # `rsfm tile` picks the modality from the input's bands and writes window classes
    classes = tmp_path / "s1_cli_classes.tif"
    args = ["tile", "colearn-s1s2", str(scene), str(classes), "--hub", str(hub)]
    assert cli_main([*args, "--tile-size", "32", "--overlap", "16"]) == 0
    with rasterio.open(classes) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.count == 1
        np.testing.assert_array_equal(dst.read(1), probabilities.argmax(axis=0))


@pytest.mark.shared_data
def test_bigearthnet_s1_s2_pairs_train_a_step(
    co: SimpleNamespace, shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (CONF / "colearning_bigearthnet.yaml").read_text()
    config = tmp_path / "bigearthnet.yaml"
    config.write_text(text.replace("../shared/data", str(shared_data)))
    monkeypatch.chdir(tmp_path)
    folder = shared_data / "bigearthnet_s1s2"
    before = sorted(p.name for p in (folder / "stacked").iterdir())
    assert (
        cli_main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path)]) == 0
    )
    assert sorted(p.name for p in (folder / "stacked").iterdir()) == before  # nothing written

    # the same data in Python: every pair's S1 window lies on its S2 patch, labels from the table
    settings = yaml.safe_load(text)["data"]["init_args"]
    names = settings["class_names"]
    table = json.loads((folder / "labels.json").read_text())
    data = MultiModalDataModule(
        task="multilabel",
        modalities=[
            {
                "name": "s2",
                "paths": [str(folder / "stacked" / "*_S2_*.tif")],
                "sensor": "sentinel2_l2a",
            },
            {
                "name": "s1",
                "paths": [str(folder / "stacked" / "*_S1_*.tif")],
                "sensor": "sentinel1_grd",
            },
        ],
        label_table=str(folder / "labels.json"),
        class_names=names,
        patch_size=64,
        batch_size=4,
        samples_per_epoch=4,
        val_samples=4,
        stats_samples=4,
    )
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape[1:] == (12, 64, 64) and batch["pair_image"].shape[1:] == (2, 64, 64)
    assert torch.isfinite(batch["pair_image"]).all()
    for label, bounds in zip(batch["label"], batch["bounds"], strict=True):
        got = sorted(names[i] for i in label.nonzero().flatten().tolist())
        patch = next(
            key
            for key in table
            if _contains(folder / "stacked" / f"{key}_S2_12band_10m.tif", bounds)
        )
        assert got == sorted(table[patch]["labels"])
    task = co.Task(
        num_outputs=len(names),
        task_type="multilabel",
        model_args={
            "modalities": yaml.safe_load(text)["model"]["init_args"]["model_args"]["modalities"]
        },
    )
    task.batch_keys = data.modality_keys
    terms = task.losses(task.model.forward_train(task.inputs(batch)), batch["label"].float())
    assert all(torch.isfinite(v) for v in terms.values()) and terms["contrastive"] > 0


def _contains(path: Path, bounds: tuple[float, ...]) -> bool:
    with rasterio.open(path) as src:
        left, bottom, right, top = src.bounds
    cx, cy = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    return left <= cx <= right and bottom <= cy <= top

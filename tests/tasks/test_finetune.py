"""Fine-tuning: heads, LoRA, registered variants, labelled data, tasks x modes, weights, CLI."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
from rasters import smooth, write_geotiff

import rsfm.hub
from rsfm.band_stats import BandStats
from rsfm.data.datamodules.labelled import LabelledGeoDataModule
from rsfm.data.datamodules.pretrain import GeoDataModule
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.spectra import LandCover
from rsfm.hub.card import ModelCard
from rsfm.models import create_model, list_models, model_config, model_from_config
from rsfm.models.finetune import load_backbone_weights
from rsfm.models.layers.heads import LinearHead, PooledHead, UPerNetHead
from rsfm.models.layers.lora import (
    LoRALinear,
    apply_lora,
    lora_parameters,
    merge_lora,
    unmerge_lora,
)
from rsfm.tasks.classification import ClassificationTask
from rsfm.tasks.mae import MAEPretrainTask
from rsfm.tasks.regression import RegressionTask
from rsfm.tasks.segmentation import SegmentationTask

REPO = Path(__file__).resolve().parents[2]
TINY_WORLD = SyntheticWorldConfig(seed=0, n_scenes=3, scene_size_m=960)
S2_WAVELENGTHS = torch.tensor([442.7, 492.4, 559.8, 664.6, 704.1, 740.5, 782.8, 832.8, 864.7])
FINETUNE_VARIANTS = [
    n for n in list_models("smarties_tiny_*") if "_seg_" in n or n.endswith(("_cls", "_reg"))
]


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and two threads spinning on two busy cores
    run ~50x slower than one (measured: 12 UPerNet steps 21.8 s vs 0.26 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def _datamodule(task: str, **overrides) -> LabelledGeoDataModule:
    args = dict(
        task=task,
        synthetic=TINY_WORLD,
        patch_size=32,
        batch_size=8,
        samples_per_epoch=32,
        val_samples=16,
        stats_samples=16,
    )
    return LabelledGeoDataModule(**{**args, **overrides})


@pytest.fixture(scope="module")
def fixed_batches() -> dict[str, dict]:
    """One training batch per data task, from the tiny synthetic world."""
    batches = {}
    for task in ("segmentation", "classification", "multilabel", "regression"):
        dm = _datamodule(task)
        dm.prepare_data()
        dm.setup("fit")
        pl.seed_everything(0)
        batches[task] = next(iter(dm.train_dataloader()))
    return batches


# ----------------------------------------------------------------------------- heads
@pytest.mark.parametrize("size", [32, 64])
def test_dense_heads_predict_every_pixel(size: int) -> None:
    torch.manual_seed(0)
    grid = size // 8
    maps = [torch.randn(2, 16, grid, grid, requires_grad=True) for _ in range(4)]
    upernet = UPerNetHead(16, num_outputs=5, channels=8).eval()
    linear = LinearHead(16, num_outputs=5).eval()
    out_u = upernet(maps, (size, size))
    out_l = linear(maps, (size, size))
    assert out_u.shape == out_l.shape == (2, 5, size, size)
    assert torch.isfinite(out_u).all() and torch.isfinite(out_l).all()
    out_u.sum().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)  # all 4 levels used
    # Per-token logits, upsampled bilinearly: the corner pixel is exactly its token's logits.
    with torch.no_grad():
        token = linear.classifier(linear.norm(maps[-1]))[:, :, 0, 0]
    assert torch.allclose(out_l[:, :, 0, 0], token, atol=1e-5)


def test_pooled_head_standardises_features_without_affine() -> None:
    head = PooledHead(8, num_outputs=3)
    assert not head.norm.affine and sum(p.numel() for p in head.parameters()) == 8 * 3 + 3
    features = torch.randn(64, 8) * 50 + 7
    head.train()
    logits = head(features)
    assert logits.shape == (64, 3)
    normed = head.norm(features)
    assert torch.allclose(normed.mean(0), torch.zeros(8), atol=1e-4)
    assert torch.allclose(normed.std(0, unbiased=False), torch.ones(8), atol=1e-3)


# ----------------------------------------------------------------------------- LoRA
def test_lora_zero_init_is_identity_and_only_adapters_train() -> None:
    torch.manual_seed(0)
    encoder = create_model("smarties_tiny").encoder.eval()
    image, wavelengths = torch.randn(2, 9, 32, 32), S2_WAVELENGTHS
    with torch.no_grad():
        before = encoder(image, wavelengths)
    adapted = copy.deepcopy(encoder)
    names = apply_lora(adapted, rank=4, alpha=8.0)
    assert names == [f"blocks.{i}.{n}" for i in range(2) for n in ("attn.qkv", "attn.proj")]
    assert all(isinstance(adapted.get_submodule(n), LoRALinear) for n in names)
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable)
    assert len(trainable) == 2 * len(names)
    with torch.no_grad():
        assert torch.equal(adapted(image, wavelengths), before)  # B = 0: exactly unchanged
    # A pretrained plain state dict loads into the adapted encoder (only adapter keys are new).
    missing, unexpected = adapted.load_state_dict(encoder.state_dict(), strict=False)
    assert not unexpected and missing and all(".lora_" in k for k in missing)


def test_lora_merge_equals_unmerged_and_unmerge_restores() -> None:
    torch.manual_seed(0)
    encoder = create_model("smarties_tiny").encoder
    apply_lora(encoder, rank=4, alpha=8.0)
    image, wavelengths = torch.randn(2, 9, 32, 32), S2_WAVELENGTHS
    optimizer = torch.optim.SGD(list(lora_parameters(encoder)), lr=0.5)
    for _ in range(3):  # give the adapters non-zero updates
        optimizer.zero_grad()
        encoder(image, wavelengths).pow(2).mean().backward()
        optimizer.step()
    encoder.eval()
    qkv = encoder.blocks[0].attn.qkv
    assert qkv.lora_B.abs().sum() > 0
    original = qkv.weight.detach().clone()
    with torch.no_grad():
        unmerged = encoder(image, wavelengths)
        assert merge_lora(encoder) == 4
        merged = encoder(image, wavelengths)
        assert not torch.equal(qkv.weight, original)
        assert unmerge_lora(encoder) == 4
        again = encoder(image, wavelengths)
    assert torch.allclose(merged, unmerged, atol=1e-5)
    assert torch.allclose(again, unmerged, atol=1e-5)
    assert torch.allclose(qkv.weight, original, atol=1e-6)
    with torch.no_grad():
        base = torch.nn.functional.linear(torch.ones(1, 64), original, qkv.bias)
        expected = base + qkv.scaling * torch.ones(1, 64) @ qkv.lora_A.T @ qkv.lora_B.T
        assert torch.allclose(qkv(torch.ones(1, 64)), expected, atol=1e-5)


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", FINETUNE_VARIANTS)
def test_registered_variants_round_trip_through_model_config(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    config = json.loads(json.dumps(model_config(model)))  # JSON-ready
    rebuilt = model_from_config(config).eval()
    rebuilt.load_state_dict(model.state_dict())
    image = torch.randn(2, 9, 32, 32)
    with torch.no_grad():
        out, out2 = model(image, S2_WAVELENGTHS), rebuilt(image, S2_WAVELENGTHS)
    k = model.num_outputs
    assert out.shape == ((2, k, 32, 32) if model.dense else (2, k))
    assert torch.equal(out, out2) and rebuilt.model_name == name


def test_lora_model_round_trips_and_linear_probe_rejects_upernet() -> None:
    model = create_model("smarties_tiny_seg_upernet", lora={"rank": 2, "alpha": 4.0})
    rebuilt = model_from_config(model_config(model))
    assert set(rebuilt.state_dict()) == set(model.state_dict())
    assert any(".lora_A" in k for k in model.state_dict())
    with pytest.raises(ValueError, match="linear head"):
        model.set_mode("linear_probe")
    with pytest.raises(ValueError, match="needs adapters"):
        create_model("smarties_tiny_cls").set_mode("lora")


# ----------------------------------------------------------------------------- labelled data
def test_window_labels_follow_the_label_raster(fixed_batches: dict[str, dict]) -> None:
    cls, multi = fixed_batches["classification"], fixed_batches["multilabel"]
    for mask, label in zip(cls["mask"], cls["label"], strict=True):
        counts = torch.bincount(mask[mask >= 0], minlength=7)
        assert label.item() == int(counts.argmax())
    for mask, label in zip(multi["mask"], multi["label"], strict=True):
        counts = torch.bincount(mask[mask >= 0], minlength=7).float()
        assert torch.equal(label, (counts / counts.sum() > 0.05).float())
    seg = fixed_batches["segmentation"]
    assert seg["mask"].shape == (8, 32, 32) and seg["mask"].dtype == torch.int64
    assert int(seg["mask"].min()) >= -1 and int(seg["mask"].max()) <= 6
    assert torch.equal(seg["mask"][~seg["valid"]], torch.full_like(seg["mask"][~seg["valid"]], -1))


def test_vegetation_fraction_target_matches_land_cover() -> None:
    grid = dict(val_stride=16, val_samples=25, batch_size=25)
    regression, segmentation = (
        _datamodule("regression", **grid),
        _datamodule("segmentation", **grid),
    )
    regression.prepare_data()
    for dm in (regression, segmentation):
        dm.setup("fit")
    # The validation grid is deterministic: both modules read the same windows.
    target = torch.cat([b["target"] for b in regression.val_dataloader() if "target" in b])
    mask = torch.cat([b["mask"] for b in segmentation.val_dataloader() if "mask" in b])
    assert target.shape == mask.shape and target.shape[1:] == (32, 32)
    finite = torch.isfinite(target)
    assert torch.equal(finite, mask >= 0)  # both unknown exactly where the image is nodata
    assert target[finite].min() >= 0.0 and target[finite].max() <= 1.0 + 1e-6
    forest = target[mask == LandCover.FOREST]
    water = target[mask == LandCover.WATER]
    assert forest.numel() > 100 and water.numel() > 20
    assert forest.mean() > 0.8 and water.mean() < 0.2


def test_pretrained_statistics_replace_the_datamodule_ones() -> None:
    dm = _datamodule("segmentation")
    dm.setup("fit")
    before = next(iter(dm.val_dataloader()))
    own = dm.band_stats["sentinel2_l1c"]
    shifted = BandStats.from_dict({**own.to_dict(), "mean": [m + 0.01 for m in own.mean]})
    unrelated = BandStats(["VV"], [5.55e7], [-30.0], [5.0], [-12.0], [4.0], sensor="s1")
    used = dm.use_band_stats({"s1": unrelated, "pretrained": shifted.to_dict()})
    assert used == {"sentinel2_l1c": "pretrained"}
    after = next(iter(dm.val_dataloader()))
    valid = before["valid"][:, None].expand_as(before["image"])
    expected = before["image"] - 0.01 / torch.tensor(own.std)[None, :, None, None]
    assert torch.allclose(after["image"][valid], expected[valid], atol=1e-4)
    assert not torch.allclose(after["image"], before["image"])


def test_regression_targets_from_user_rasters_and_image_level_labels(tmp_path: Path) -> None:
    image = smooth(4, 48, 48, seed=1)
    target = (image[0] / 1000.0).astype(np.float32)
    write_geotiff(tmp_path / "img.tif", image.astype(np.uint16))
    write_geotiff(tmp_path / "veg.tif", target, nodata=float("nan"))
    dm = LabelledGeoDataModule(
        task="regression",
        images=[str(tmp_path / "img.tif")],
        labels=[str(tmp_path / "veg.tif")],
        sensor="naip",
        patch_size=16,
        batch_size=4,
        samples_per_epoch=4,
        val_samples=4,
        stats_samples=4,
    )
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    raw = torch.from_numpy(target)
    for window, transform in zip(batch["target"], batch["transform"], strict=True):
        col = int(round((transform.c - 500_000.0) / 10))
        row = int(round((5_000_000.0 - transform.f) / 10))
        assert torch.allclose(window, raw[row : row + 16, col : col + 16], atol=1e-4)
    # No band statistics were written beside the user's data.
    assert not list(tmp_path.glob("band_stats*"))

    for name, labels in (("a", ["forest", "water"]), ("b", ["crop"])):
        path = write_geotiff(
            tmp_path / "cls" / f"{name}.tif",
            smooth(4, 16, 16).astype(np.uint16),
            origin=(600_000.0 if name == "a" else 700_000.0, 5_000_000.0),
        )
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(LABELS=json.dumps(labels))
    dm = LabelledGeoDataModule(
        task="multilabel",
        images=[str(tmp_path / "cls")],
        val_images=[str(tmp_path / "cls")],
        label_tag="LABELS",
        class_names=["crop", "forest", "water"],
        sensor="naip",
        patch_size=16,
        batch_size=2,
        samples_per_epoch=2,
        val_samples=2,
        stats_samples=2,
    )
    dm.setup("fit")
    labels = {
        bounds[0]: label.tolist()
        for b in dm.val_dataloader()
        for bounds, label in zip(b["bounds"], b["label"], strict=True)
    }
    assert labels == {600_000.0: [0.0, 1.0, 1.0], 700_000.0: [1.0, 0.0, 0.0]}


# ----------------------------------------------------------------------------- tasks x modes
TASKS = {
    "segmentation": (SegmentationTask, {}),
    "classification": (ClassificationTask, {}),
    "multilabel": (ClassificationTask, {"multilabel": True}),
    "regression": (RegressionTask, {}),
}


@pytest.mark.parametrize("mode", ["linear_probe", "frozen", "full", "lora"])
@pytest.mark.parametrize("task_name", list(TASKS))
def test_each_task_and_mode_learns_a_fixed_batch(
    task_name: str, mode: str, fixed_batches: dict[str, dict]
) -> None:
    task_cls, kwargs = TASKS[task_name]
    if mode == "linear_probe" and task_name in ("segmentation", "regression"):
        kwargs = {**kwargs, "model_args": {"head": "linear"}}
    pl.seed_everything(0)
    task = task_cls(mode=mode, lora_rank=4, **kwargs)
    batch = fixed_batches[task_name]
    encoder_before = {k: v.clone() for k, v in task.model.encoder.state_dict().items()}
    trainable = [p for p in task.parameters() if p.requires_grad]
    names = task.model.trainable_parameter_names()
    if mode == "full":
        assert any(n.startswith("encoder.blocks") for n in names)
    else:
        assert all(n.startswith("head.") or ".lora_" in n for n in names)
        assert (mode == "lora") == any(".lora_" in n for n in names)
    optimizer = torch.optim.AdamW(trainable, lr=3e-3, weight_decay=0.0)
    task.train()
    assert task.model.encoder.training == (mode in ("full", "lora"))
    losses = []
    for _ in range(12):
        loss = task.loss_and_targets(task(batch["image"], batch["wavelengths"]), batch)[0]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.9 * losses[0], losses
    after = task.model.encoder.state_dict()
    frozen_same = all(
        torch.equal(after[k], v) for k, v in encoder_before.items() if ".lora_" not in k
    )
    assert frozen_same == (mode != "full")


def test_layer_decay_scales_block_learning_rates(tmp_path: Path) -> None:
    pl.seed_everything(0)
    task = ClassificationTask(mode="full", lr=1e-3, layer_decay=0.5, multilabel=True)
    trainer = _trainer(tmp_path, max_steps=1, limit_val_batches=0)
    trainer.fit(task, datamodule=_datamodule("multilabel"))
    groups = trainer.optimizers[0].param_groups
    scales = {round(g["lr_scale"], 6) for g in groups}
    assert scales == {0.125, 0.25, 0.5, 1.0}  # stem, block 0, block 1, head (+ final norm)
    head = {id(p) for p in task.model.head.parameters()}
    for group in groups:
        assert group["initial_lr"] == pytest.approx(1e-3 * group["lr_scale"])
        if any(id(p) in head for p in group["params"]):
            assert group["lr_scale"] == 1.0


# ----------------------------------------------------------------------------- weights
@pytest.fixture(scope="module")
def mae_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly pretrained ``MAEPretrainTask`` checkpoint (2 epochs x 4 steps, tiny world)."""
    folder = tmp_path_factory.mktemp("mae")
    pl.seed_everything(0)
    mae = MAEPretrainTask(model="smarties_tiny", lr=1e-3, warmup_epochs=0.5)
    pretrain_data = GeoDataModule(
        synthetic=TINY_WORLD,
        synthetic_sensors=["sentinel2_l1c"],
        synthetic_pairs=[],
        patch_size=32,
        batch_size=8,
        samples_per_epoch=32,
        val_samples=8,
        stats_samples=16,
    )
    trainer = _trainer(folder, max_epochs=2, limit_val_batches=0)
    trainer.fit(mae, datamodule=pretrain_data)
    ckpt = folder / "mae.ckpt"
    trainer.save_checkpoint(ckpt)
    return ckpt


def test_mae_checkpoint_feeds_a_linear_probe_on_held_out_windows(
    mae_checkpoint: Path, tmp_path: Path
) -> None:
    """Probe from the pretrained weights and from random init, same seed and steps.

    Eight steps of pretraining cannot make the probe reliably better than a random encoder, so
    this test asserts the pipeline: the checkpoint's encoder and statistics arrive, and both
    probes beat the majority class. That the embedded default beats a random encoder is
    asserted in tests/test_embedded_default.py (measurements in docs/finetuning.md).
    """
    ckpt = mae_checkpoint
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    results, baselines = {}, {}
    for source in ("pretrained", "random"):
        pl.seed_everything(0)
        task = SegmentationTask(
            model="smarties_tiny_seg_linear",
            mode="linear_probe",
            weights=str(ckpt) if source == "pretrained" else None,
            lr=1e-2,
            weight_decay=0.0,
            warmup_epochs=0,
        )
        data = _datamodule("segmentation", val_samples=9)
        probe = _trainer(tmp_path / source, max_epochs=3)
        probe.fit(task, datamodule=data)
        results[source] = {k: float(v) for k, v in probe.callback_metrics.items()}
        if source == "pretrained":
            for key, value in task.model.encoder.state_dict().items():
                assert torch.equal(value, saved["state_dict"][f"model.encoder.{key}"]), key
            used = data.band_stats["sentinel2_l1c"].to_dict()
            assert used == saved["rsfm_band_stats"]["sentinel2_l1c"]
        labels = torch.cat([b["mask"].flatten() for b in data.val_dataloader() if "mask" in b])
        labels = labels[labels >= 0]
        counts = torch.bincount(labels, minlength=task.num_classes)
        majority = counts.max().item() / labels.numel()
        # Baselines from the labels alone: the majority class everywhere (its mIoU is
        # majority / classes present) and the class prior (its cross-entropy is the entropy).
        majority_miou = majority / int((counts > 0).sum())
        prior = counts[counts > 0].double() / labels.numel()
        prior_loss = float(-(prior * prior.log()).sum())
        baselines[source] = {"majority": majority, "miou": majority_miou, "loss": prior_loss}
        assert results[source]["val/accuracy"] > majority + 0.1, (source, results, majority)
        assert results[source]["val/miou"] > majority_miou + 0.15, (source, results, baselines)
        assert results[source]["val/loss"] < prior_loss - 0.1, (source, results, baselines)


def test_hub_entry_weights_and_card_statistics(
    mae_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RSFM_HUB", str(tmp_path / "hub"))
    rsfm.hub.push_checkpoint(mae_checkpoint, "mae-tiny", version="1.0")
    saved = torch.load(mae_checkpoint, map_location="cpu", weights_only=True)
    model = create_model("smarties_tiny_seg_linear")
    stats = load_backbone_weights(model, "mae-tiny")
    assert stats["sentinel2_l1c"] == saved["rsfm_band_stats"]["sentinel2_l1c"]
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, saved["state_dict"][f"model.encoder.{key}"]), key


def test_hub_contract_weights_and_card_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(1)
    published = create_model("smarties_tiny")
    stats = BandStats(["B2"], [492.4], [0.0], [1.0], [0.1], [0.05], sensor="sentinel2_l1c")
    published.rsfm_card = ModelCard(normalization={"sentinel2_l1c": stats})
    calls = []

    def fake_load(name: str, hub: str | None = None) -> torch.nn.Module:
        calls.append(name)
        return published

    monkeypatch.setattr(rsfm.hub, "load", fake_load)  # raises if the hub API is renamed
    model = create_model("smarties_tiny_cls")
    got = load_backbone_weights(model, "smarties-tiny")
    assert calls == ["smarties-tiny"] and got == {"sentinel2_l1c": stats.to_dict()}
    for key, value in published.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)
    wrong = create_model("smarties_tiny_cls", backbone_args={"embed_dim": 32})
    with pytest.raises(ValueError, match="smarties-tiny"):
        load_backbone_weights(wrong, "smarties-tiny")


def test_unreadable_weights_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.ckpt"):
        SegmentationTask(weights=str(bad))
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        SegmentationTask(weights=str(tmp_path / "missing.ckpt"))


# ----------------------------------------------------------------------------- real data
REAL = {
    "sen1floods11_water": dict(
        images=["sen1floods11_spain/Spain_7370579_S2Hand.tif"],
        labels=["sen1floods11_spain/Spain_7370579_LabelHand.tif"],
        sensor="sentinel2_l1c",
        class_names=["dry", "water"],
        bands=13,
    ),
    "enmap_landcover": dict(
        images=["enmap_potsdam/enmap_potsdam_tile_128_0_image.tif"],
        labels=["enmap_potsdam/enmap_potsdam_tile_128_0_label.tif"],
        sensor=None,  # 224 wavelengths from the file's tags
        class_names=[f"class_{i}" for i in range(1, 7)],
        ignore_values=[0],
        label_offset=1,
        bands=224,
    ),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("case", list(REAL))
def test_linear_probe_on_real_data(case: str, shared_data: Path, tmp_path: Path) -> None:
    spec = dict(REAL[case])
    n_bands = spec.pop("bands")
    images = [str(shared_data / p) for p in spec.pop("images")]
    labels = [str(shared_data / p) for p in spec.pop("labels")]
    before = sorted(p.name for p in Path(images[0]).parent.iterdir())
    data = LabelledGeoDataModule(
        task="segmentation",
        images=images,
        labels=labels,
        patch_size=32,
        batch_size=4,
        samples_per_epoch=8,
        val_samples=4,
        stats_samples=4,
        **spec,
    )
    pl.seed_everything(0)
    task = SegmentationTask(
        model="smarties_tiny_seg_linear",
        num_classes=len(spec["class_names"]),
        mode="linear_probe",
        lr=1e-2,
        warmup_epochs=0,
    )
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(task, datamodule=data)
    batch = next(iter(data.val_dataloader()))
    assert batch["image"].shape[1:] == (n_bands, 32, 32)
    assert int(batch["mask"].max()) < len(spec["class_names"]) and (batch["mask"] >= 0).any()
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert np.isfinite(metrics["train/loss"]) and np.isfinite(metrics["val/loss"])
    # Two steps do not beat the majority class (sen1floods11 is 85 % land), but the per-class
    # (balanced) accuracy beats every constant prediction's, 1 / classes present: measured
    # 0.77 vs 0.5 (sen1floods11) and 0.29 vs 0.2 (EnMAP).
    labels = torch.cat([b["mask"].flatten() for b in data.val_dataloader()])
    present = int((torch.bincount(labels[labels >= 0]) > 0).sum())
    assert metrics["val/accuracy_macro"] > 1.0 / present + 0.05, (metrics, present)
    assert sorted(p.name for p in Path(images[0]).parent.iterdir()) == before  # nothing written


def _tag_labels(path: str) -> list[str]:
    with rasterio.open(path) as src:
        return json.loads(src.tags()["LABELS"])


def _same_footprint(path: str, sample: dict) -> bool:
    with rasterio.open(path) as src:
        return src.crs == sample["crs"] and np.allclose(tuple(src.bounds), sample["bounds"])


@pytest.mark.shared_data
def test_bigearthnet_multilabels_from_file_tags(shared_data: Path) -> None:
    folder = shared_data / "bigearthnet_s1s2" / "stacked"
    files = sorted(str(p) for p in folder.glob("*_S2_12band_10m.tif"))
    names = sorted({n for f in files for n in _tag_labels(f)})
    data = LabelledGeoDataModule(
        task="multilabel",
        images=files,
        val_images=files,
        label_tag="LABELS",
        class_names=names,
        sensor="sentinel2_l2a",
        patch_size=120,
        batch_size=4,
        samples_per_epoch=4,
        val_samples=8,
        stats_samples=4,
    )
    data.setup("fit")
    seen = set()
    for windows in data.val_dataset.datasets:
        for index in range(len(windows)):
            sample = windows[index]
            path = next(f for f in files if _same_footprint(f, sample))
            got = [names[i] for i in sample["label"].nonzero().flatten().tolist()]
            assert sorted(got) == sorted(_tag_labels(path))
            seen.add(path)
    assert seen == set(files)
    task = ClassificationTask(num_classes=len(names), multilabel=True, mode="linear_probe")
    batch = next(iter(data.val_dataloader()))
    loss = task.loss_and_targets(task(batch["image"], batch["wavelengths"]), batch)[0]
    assert batch["image"].shape[1:] == (12, 120, 120) and torch.isfinite(loss)

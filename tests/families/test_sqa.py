"""Segmentation quality assessment: dataset builder, SQA model, task metrics, assess command."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
from scipy import stats

import rsfm.hub
import rsfm.models.sqa
from rsfm.cli import main as rsfm_main
from rsfm.curation.segmenter_zoo import synthetic_segmenters
from rsfm.curation.sqa_builder import build_sqa_dataset, per_image_accuracy
from rsfm.data.datamodules.sqa import SQADataModule
from rsfm.data.labels import IGNORE_INDEX
from rsfm.data.sqa_records import (
    FEATURES_NAME,
    LabelledImages,
    SQADataset,
    read_manifest,
    split_image_ids,
)
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.world import ensure_synthetic_world, scene_files
from rsfm.inference.assess import assess_main, quality_map
from rsfm.models import create_model, model_config, model_from_config
from rsfm.models.sqa import (
    CrossGating,
    Segmenter,
    SQAModel,
    prediction_features,
    segmenter_features,
)
from rsfm.tasks.sqa import SQATask, pairwise_rank_loss, recommendation_accuracy, sqa_metrics

REPO = Path(__file__).resolve().parents[2]
WORLD = SyntheticWorldConfig(seed=0, n_scenes=4, scene_size_m=1280, sensors=("sentinel2_l1c",))
ZOO_IDS = [
    "seg_steps0", "seg_steps10", "seg_steps60", "seg_blind1", "seg_noisy", "seg_confused23"
]  # fmt: skip


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread: tiny models on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(root: Path, epochs: int) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=epochs,
        deterministic=True,
        default_root_dir=root,
    )


@pytest.fixture(scope="module")
def zoo() -> list[Segmenter]:
    """Six segmenters of different quality on the 4-scene world (trained in ~6 s)."""
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return synthetic_segmenters(WORLD, steps=(0, 10, 60), seed=0)


@pytest.fixture(scope="module")
def sqa_root(zoo: list[Segmenter], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQA dataset of the zoo on every 32 px window (stride 16) of the world."""
    root = tmp_path_factory.mktemp("sqa") / "dataset"
    return build_sqa_dataset(
        zoo, root, LabelledImages(synthetic=WORLD), stride=16, normalization=zoo[0].normalization
    )


# ----------------------------------------------------------------------------- features/metrics
def test_prediction_features_are_the_documented_statistics() -> None:
    logits = torch.full((1, 3, 2, 2), -20.0)
    logits[0, 0, 0, :] = 20.0  # top row: class 0, certain
    logits[0, :, 1, 0] = 0.0  # bottom-left: uniform over 3 classes (argmax -> class 0)
    logits[0, 2, 1, 1] = 20.0  # bottom-right: class 2
    valid = torch.tensor([[[True, True], [True, False]]])
    features = prediction_features(logits, valid)
    assert features.shape == (1, 2 * 3 + 2)
    third = 1.0 / 3.0
    expected_probs = [(2 + third) / 3, third / 3, third / 3]
    assert torch.allclose(features[0, :3], torch.tensor(expected_probs), atol=1e-5)
    assert torch.allclose(features[0, 3:6], torch.tensor([1.0, 0.0, 0.0]))  # shares
    assert features[0, 6] == pytest.approx((2 + third) / 3, abs=1e-5)  # mean top-1 prob
    assert features[0, 7] == pytest.approx(1.0 / 3.0, abs=1e-5)  # one of 3 pixels max entropy


def test_per_image_accuracy_counts_pixels_and_skips_absent_classes() -> None:
    target = torch.tensor([[[0, 0], [1, IGNORE_INDEX]], [[2, 2], [2, 2]]])
    pred = torch.tensor([[[0, 1], [1, 3]], [[2, 2], [2, 0]]])
    oa, miou = per_image_accuracy(pred, target, num_classes=4)
    assert oa == pytest.approx([2 / 3, 3 / 4])
    # image 0: IoU(class 0) = 1/2, IoU(class 1) = 1/2 (class 3 lies on an ignored pixel)
    # image 1: IoU(class 2) = 3/4, IoU(class 0) = 0 (predicted, absent) -> mean 3/8
    assert miou == pytest.approx([0.5, 0.375])


def test_sqa_metrics_match_scipy_and_recommendation_counts_ties() -> None:
    rng = np.random.default_rng(0)
    target = rng.uniform(size=40)
    pred = target + rng.normal(scale=0.1, size=40)
    ids = np.repeat(np.arange(10), 4)
    metrics = sqa_metrics(pred, target, ids)
    assert metrics["srcc"] == pytest.approx(stats.spearmanr(pred, target).statistic)
    assert metrics["plcc"] == pytest.approx(stats.pearsonr(pred, target).statistic)
    assert metrics["krcc"] == pytest.approx(stats.kendalltau(pred, target).statistic)
    assert metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean((pred - target) ** 2))))
    accuracy, regret, n = recommendation_accuracy(
        np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.5]),
        np.array([0.7, 0.7, 0.1, 0.4, 0.9, 0.2]),  # image 0: tie -> hit; image 1: miss
        np.array([0, 0, 0, 1, 1, 1]),
    )
    assert (accuracy, n) == (0.5, 2) and regret == pytest.approx(0.25)


def test_rank_loss_is_zero_only_when_pairs_are_ordered_with_margin() -> None:
    target = torch.tensor([0.1, 0.5, 0.9])
    assert float(pairwise_rank_loss(torch.tensor([0.0, 0.5, 1.0]), target, 0.1)) == 0.0
    swapped = pairwise_rank_loss(torch.tensor([1.0, 0.5, 0.0]), target, 0.1)
    assert float(swapped) == pytest.approx((0.6 + 1.1 + 0.6) / 3)


# ----------------------------------------------------------------------------- model
def test_sqa_model_scores_gates_and_keeps_the_semantic_encoder_frozen() -> None:
    torch.manual_seed(0)
    model = create_model("sqa_tiny").train()
    baseline = create_model("sqa_tiny", use_semantic=False)
    image, waves = (
        torch.randn(4, 9, 32, 32),
        torch.tensor([443, 492, 560, 665, 704, 740, 783, 833, 865.0]),
    )
    feats = torch.rand(4, 16)
    scores = model(feats, image, waves)
    assert scores.shape == (4,) and bool(((scores > 0) & (scores < 1)).all())
    scores.sum().backward()
    assert all(p.grad is None for p in model.semantic.parameters())
    assert model.segmenter_proj.weight.grad.abs().sum() > 0
    assert not model.semantic.training  # frozen encoder stays in eval mode
    assert baseline.semantic is None and baseline.head.fc1.in_features == 64
    assert model.head.fc1.in_features == 128
    gate = CrossGating(3)
    a, b = torch.randn(2, 3), torch.randn(2, 3)
    expected = torch.cat([a * torch.sigmoid(gate.gate_a(b)), b * torch.sigmoid(gate.gate_b(a))], 1)
    assert torch.allclose(gate(a, b), expected)
    with pytest.raises(ValueError, match="built for 16"):
        model(torch.rand(4, 80), image, waves)
    config = json.loads(json.dumps(model_config(model)))
    assert config["init_args"]["semantic_encoder"] == "smarties_tiny"
    assert isinstance(model_from_config(config), SQAModel)


def test_injected_semantic_encoder_is_used() -> None:
    class MeanSpectrum(torch.nn.Module):
        output_dim = 3

        def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
            return image.mean(dim=(2, 3))

    model = SQAModel(segmenter_dim=5, semantic_encoder=MeanSpectrum()).eval()
    image = torch.randn(2, 3, 8, 8)
    semantic = model.semantic_features(image, torch.tensor([490.0, 560.0, 665.0]))
    assert torch.allclose(semantic, image.mean(dim=(2, 3)))
    assert model.init_args["semantic_encoder"] == "custom:MeanSpectrum"


# ----------------------------------------------------------------------------- dataset
def test_dataset_records_reproduce_each_segmenter_accuracy(
    zoo: list[Segmenter], sqa_root: Path
) -> None:
    info, records = read_manifest(sqa_root)
    assert list(info["segmenters"]) == ZOO_IDS
    n_images = info["n_images"]
    # 128 px scenes, 32 px windows every 16 px; the last scene's nodata wedge drops a few
    assert 4 * 7 * 7 - 4 <= n_images < 4 * 7 * 7
    assert len(records) == n_images * len(ZOO_IDS)
    assert info["segmenters"]["seg_steps60"]["feature_dims"] == {"encoder": 64, "prediction": 16}
    by_segmenter = {s: np.mean([r["oa"] for r in records if r["segmenter"] == s]) for s in ZOO_IDS}
    assert by_segmenter["seg_steps0"] < by_segmenter["seg_steps10"] < by_segmenter["seg_steps60"]
    assert by_segmenter["seg_confused23"] < by_segmenter["seg_steps60"] - 0.1
    # Read back one record and recompute its accuracy from the stored window.
    dataset = SQADataset(sqa_root, target="oa", feature_keys=["encoder", "prediction"])
    index = next(i for i, r in enumerate(records) if r["segmenter"] == "seg_steps60" and i > 500)
    item, record = dataset[index], records[index]
    assert item["image"].shape == (13, 32, 32) and item["segmenter_features"].shape == (80,)
    assert item["target"] == pytest.approx(record["oa"])
    segmenter = zoo[ZOO_IDS.index("seg_steps60")]
    # Same window, same normalisation: the segmenter reproduces the stored features and OA.
    assert not segmenter.model.training  # scoring other segmenters left its mode alone
    logits, feats = segmenter_features(segmenter.model, item["image"][None], item["wavelengths"])
    labels = scene_files(ensure_synthetic_world(config=WORLD), "labels")
    label_file = next(p for p in labels if p.parent == Path(record["file"]).parent)
    with rasterio.open(label_file) as src:
        mask = torch.from_numpy(src.read(1, window=src.window(*record["bounds"])).astype(np.int64))
    oa, miou = per_image_accuracy(
        logits.argmax(1), mask[None].masked_fill(mask[None] == 255, -1), 7
    )
    assert oa[0] == pytest.approx(record["oa"], abs=1e-6)
    assert miou[0] == pytest.approx(record["miou"], abs=1e-6)
    assert torch.allclose(
        torch.cat([feats["encoder"], feats["prediction"]], 1)[0],
        item["segmenter_features"],
        atol=1e-4,
    )
    assert (sqa_root / FEATURES_NAME).stat().st_size > 0


def test_split_holds_out_whole_files() -> None:
    records = [{"file": f"f{i // 10}", "image_id": i} for i in range(40)]
    train, val = split_image_ids(records, 0.25, seed=0)
    assert len(val) == 10 and len({i // 10 for i in val}) == 1 and not set(train) & set(val)
    single = [{"file": "f", "image_id": i} for i in range(20)]
    train, val = split_image_ids(single, 0.25, seed=0)
    assert len(val) == 5 and sorted(train + val) == list(range(20))


# ----------------------------------------------------------------------------- must show
def _fit(root: Path, tmp_path: Path, use_semantic: bool) -> dict[str, Any]:
    data = SQADataModule(str(root), target="oa", feature_keys=["prediction"], batch_size=64)
    pl.seed_everything(0, verbose=False)
    task = SQATask(model_args={"use_semantic": use_semantic}, loss="mse")
    trainer = _trainer(tmp_path, epochs=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(task, datamodule=data)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return {**metrics, "task": task.eval(), "data": data}


@pytest.fixture(scope="module")
def fitted(sqa_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """sqa_tiny trained on three scenes (30 epochs), evaluated on the fourth."""
    return _fit(sqa_root, tmp_path_factory.mktemp("fit"), use_semantic=True)


def test_sqa_beats_the_segmenter_feature_baseline_on_held_out_images(
    sqa_root: Path, fitted: dict[str, Any], tmp_path: Path
) -> None:
    baseline = _fit(sqa_root, tmp_path, use_semantic=False)
    held_out = {r["file"] for r in fitted["data"].val_dataset.records}
    trained_on = {r["file"] for r in fitted["data"].train_dataset.records}
    assert len(held_out) == 1 and not held_out & trained_on  # a whole unseen scene
    print(f"held-out SRCC: SQA {fitted['val/srcc']:.3f}, baseline {baseline['val/srcc']:.3f}")
    assert fitted["val/srcc"] > 0.6
    assert fitted["val/srcc"] > baseline["val/srcc"] + 0.02
    assert fitted["val/rmse"] < baseline["val/rmse"]
    # Recommending a segmenter at random: hit rate (ties at the best) / n, regret best - mean.
    by_image: dict[int, list[float]] = {}
    for record in fitted["data"].val_dataset.records:
        by_image.setdefault(record["image_id"], []).append(record["oa"])
    compared = [np.array(v) for v in by_image.values() if len(v) > 1]
    chance = float(np.mean([np.mean(v >= v.max() - 1e-6) for v in compared]))
    chance_regret = float(np.mean([v.max() - v.mean() for v in compared]))
    # Measured over 49 held-out images: 0.41 vs 0.19 at random, regret 0.087 vs 0.25.
    assert fitted["val/recommendation_accuracy"] > 1.5 * chance, (fitted, chance)
    assert fitted["val/recommendation_regret"] < 0.5 * chance_regret, (fitted, chance_regret)


# ----------------------------------------------------------------------------- hub and assess
def test_hub_assess_rank_and_quality_map(
    zoo: list[Segmenter], sqa_root: Path, fitted: dict[str, Any], tmp_path: Path, capsys
) -> None:
    hub = tmp_path / "hub"
    task, data = fitted["task"], fitted["data"]
    rsfm.hub.push(task, "sqa_test", hub=hub, card={"input_size": 32})
    (stats,) = data.band_stats.values()  # {sensor: BandStats}, as every datamodule's
    for segmenter in zoo[1:3]:
        rsfm.hub.push(
            segmenter.model, segmenter.id, hub=hub, card={"normalization": {stats.sensor: stats}}
        )
    loaded = rsfm.hub.load("sqa_test", hub=hub)
    assert isinstance(loaded, SQAModel) and loaded.feature_keys == ["prediction"]
    # The whole first scene: 4 x 4 full 32 px tiles, every pixel valid.
    image = scene_files(ensure_synthetic_world(config=WORLD), "sentinel2_l1c")[0]
    argv = [str(image), "--model", "sqa_test", "--hub", str(hub)]
    assert assess_main([*argv, "--segmenter", "seg_steps60", "--json"]) == 0
    single = json.loads(capsys.readouterr().out)
    assert assess_main([*argv, "--rank", "seg_steps10", "seg_steps60", "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    scores = ranked["scores"]
    assert ranked["best"] == max(scores, key=scores.get)
    assert scores["seg_steps60"] == pytest.approx(single["scores"]["seg_steps60"], abs=1e-6)
    # Quality map: one constant per tile, equal to the SQA model on the dataset's record.
    out = tmp_path / "quality.tif"
    (segmenter,) = rsfm.models.sqa.resolve_segmenters(["seg_steps60"], hub=str(hub))
    quality_map(loaded, segmenter, image, out, wavelengths=np.asarray(stats.wavelengths),
                sqa_stats=stats, tile_size=32)  # fmt: skip
    with rasterio.open(out) as src:
        values = src.read(1)
        assert src.crs is not None and values.shape == (128, 128)
        assert src.descriptions[0] == "predicted_accuracy"
    blocks = values.reshape(4, 32, 4, 32).transpose(0, 2, 1, 3).reshape(16, -1)
    assert np.allclose(blocks, blocks[:, :1], atol=1e-6)  # constant inside every tile
    assert float(values.mean()) == pytest.approx(single["scores"]["seg_steps60"], abs=1e-5)
    dataset = SQADataset(sqa_root, target="oa", feature_keys=["prediction"])
    with rasterio.open(image) as src:
        left, top = src.bounds.left, src.bounds.top
    index = next(
        i
        for i, r in enumerate(dataset.records)
        if r["file"] == str(image)
        and r["segmenter"] == "seg_steps60"
        and r["bounds"][0] == left + 320
        and r["bounds"][3] == top - 320
    )  # the tile at row 1, column 1
    item = dataset[index]
    with torch.no_grad():
        expected = loaded(
            item["segmenter_features"][None], item["image"][None], item["wavelengths"]
        )
    assert float(blocks[5, 0]) == pytest.approx(float(expected), abs=1e-4)


def test_cli_fits_the_sqa_config(sqa_root: Path, tmp_path: Path) -> None:
    config = REPO / "tests" / "conf" / "sqa_quickstart.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = rsfm_main(
            ["fit", "--config", str(config), "--data.init_args.root", str(sqa_root),
             "--trainer.default_root_dir", str(tmp_path),
             "--trainer.logger.init_args.save_dir", str(tmp_path)]
        )  # fmt: skip
    assert code == 0
    ckpt = torch.load(next(tmp_path.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert ckpt["rsfm_model_config"]["init_args"]["segmenter_dim"] == 16
    assert ckpt["rsfm_band_stats"]["sentinel2_l1c"]["wavelengths"][0] == pytest.approx(442.7)
    assert ckpt["rsfm_task"]["task"] == "segmentation-quality-assessment"
    (stage,) = ckpt["rsfm_task"]["stages"]  # the images' sensor, from the dataset's statistics
    assert stage["stage"] == "fine-tuning" and list(stage["sensors"]) == ["sentinel2_l1c"]
    restored = SQATask.load_from_checkpoint(next(tmp_path.rglob("last.ckpt")))
    assert isinstance(restored.model, SQAModel)
    metrics = next(tmp_path.rglob("metrics.csv")).read_text()
    assert "val/srcc" in metrics and "val/recommendation_accuracy" in metrics


# ----------------------------------------------------------------------------- real data
REAL = {
    "sen1floods11_water": dict(
        images=["sen1floods11_spain/Spain_7370579_S2Hand.tif"],
        labels=["sen1floods11_spain/Spain_7370579_LabelHand.tif"],
        sensor="sentinel2_l1c",
        class_names=["dry", "water"],
        ignore_values=[],
        label_offset=0,
        patch_size=64,
    ),
    "enmap_landcover": dict(
        images=["enmap_potsdam/enmap_potsdam_tile_128_0_image.tif"],
        labels=["enmap_potsdam/enmap_potsdam_tile_128_0_label.tif"],
        sensor=None,
        class_names=[f"class_{i}" for i in range(1, 7)],
        ignore_values=[0],
        label_offset=1,
        patch_size=16,
    ),
}


@pytest.mark.shared_data
@pytest.mark.parametrize("case", list(REAL))
def test_real_labels_build_an_sqa_dataset(case: str, shared_data: Path, tmp_path: Path) -> None:
    spec = dict(REAL[case])
    patch = spec.pop("patch_size")
    source = LabelledImages(
        images=[str(shared_data / p) for p in spec.pop("images")],
        labels=[str(shared_data / p) for p in spec.pop("labels")],
        **spec,
    )
    k = len(source.classes())
    torch.manual_seed(0)
    segmenters = [
        (f"random{i}", create_model("smarties_tiny_seg_linear", num_outputs=k).eval())
        for i in range(2)
    ]
    root = build_sqa_dataset(
        segmenters, tmp_path / case, source, patch_size=patch, min_labelled_fraction=0.25
    )
    info, records = read_manifest(root)
    assert info["num_classes"] == k and len(records) == 2 * info["n_images"] > 0
    assert all(abs(sum(r["class_fractions"]) - 1.0) < 1e-4 for r in records)
    # Recompute the last record's OA and mIoU by hand: its stored window through its segmenter,
    # against the label file read here (ignore values and offset applied as the spec says).
    dataset = SQADataset(root)
    record, item = records[-1], dataset[len(records) - 1]
    model = dict(segmenters)[record["segmenter"]]
    with torch.no_grad():
        logits, _ = segmenter_features(model, item["image"][None], item["wavelengths"])
    with rasterio.open(shared_data / REAL[case]["labels"][0]) as src:
        raw = src.read(1, window=src.window(*record["bounds"])).astype(np.int64)
    mask = torch.from_numpy(raw) - spec["label_offset"]
    unlabelled = torch.from_numpy(np.isin(raw, spec["ignore_values"])) | (mask < 0) | (mask >= k)
    mask = mask.masked_fill(unlabelled, IGNORE_INDEX)
    pred, keep = logits.argmax(1)[0], mask != IGNORE_INDEX
    present = [c for c in range(k) if (mask[keep] == c).any() or (pred[keep] == c).any()]
    hits = [float(((pred == c) & (mask == c) & keep).sum()) for c in present]
    unions = [float((((pred == c) | (mask == c)) & keep).sum()) for c in present]
    ious = [h / u for h, u in zip(hits, unions, strict=True)]
    assert record["oa"] == pytest.approx(float((pred[keep] == mask[keep]).float().mean()), abs=1e-6)
    assert record["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-6)
    item = dataset[0]
    assert item["image"].shape[-2:] == (patch, patch) and torch.isfinite(item["image"]).all()
    assert item["segmenter_features"].shape == (2 * k + 2,)

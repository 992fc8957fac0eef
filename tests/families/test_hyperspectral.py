"""Hyperspectral segmentation: synthetic plume scenes, models, matched filter, task, real cubes."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
from rasters import write_geotiff

from rsfm.cli import main
from rsfm.data.datamodules.hyperspectral import (
    NEON_AOP_369,
    HyperspectralDataModule,
    good_band_names,
)
from rsfm.data.synthetic.hyperspectral import (
    MASK_NODATA,
    SYNTHETIC_HSI,
    WATER_VAPOUR_WINDOWS_NM,
    PlumeWorldConfig,
    ensure_plume_world,
    in_windows,
    plume_scene_files,
    plume_signature,
    render_plume_scene,
)
from rsfm.hub import load, push
from rsfm.hub.checkpoint_keys import TaskFacts
from rsfm.inference.engine import tile_raster
from rsfm.models.hyperspectral import HyperSegFormer, WavelengthConv2d, standardize_pixels
from rsfm.models.layers.spectral import UnknownWavelengthError
from rsfm.models.matched_filter import MatchedFilter, best_f1_threshold, ledoit_wolf_covariance
from rsfm.models.registry import create_model, model_config, model_from_config
from rsfm.tasks.hyperspectral import HyperspectralSegmentationTask, augment_batch

REPO = Path(__file__).resolve().parents[2]
TINY_PLUMES = PlumeWorldConfig(seed=0, n_scenes=3, scene_size_m=960)
# The must-show world: strong-but-noisy plumes and hydrocarbon confusers (see docs).
PLUME_WORLD = PlumeWorldConfig(seed=0, n_scenes=8)
HSI_MODELS = ("hyperseg_tiny", "segformer_tiny", "hyperefficientvit_tiny", "smarties_tiny_hsi_seg")


def _trainer(tmp_path: Path, steps: int) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        default_root_dir=tmp_path,
    )


def _f1(predictions: list[np.ndarray], masks: list[np.ndarray]) -> float:
    tp = fp = fn = 0
    for pred, mask in zip(predictions, masks, strict=True):
        labelled, positive = mask != MASK_NODATA, mask == 1
        tp += int((pred & positive & labelled).sum())
        fp += int((pred & ~positive & labelled).sum())
        fn += int((~pred & positive & labelled).sum())
    return 2 * tp / max(1, 2 * tp + fp + fn)


# ----------------------------------------------------------------------------- synthetic data
def test_plume_world_files_tags_and_physics() -> None:
    root = ensure_plume_world(config=TINY_PLUMES)
    images, masks = plume_scene_files(root)
    assert len(images) == len(masks) == 3
    bad_expected = in_windows(SYNTHETIC_HSI.wavelengths, WATER_VAPOUR_WINDOWS_NM)
    assert 0 < bad_expected.sum() < len(SYNTHETIC_HSI) and len(SYNTHETIC_HSI) == 96
    with rasterio.open(images[0]) as src, rasterio.open(masks[0]) as msk:
        assert src.crs.to_epsg() in (32632, 32633) and src.res == (30.0, 30.0)
        assert src.count == 96 and (src.width, src.height) == (32, 32)
        bbl = np.array([src.tags(i)["bbl"] == "0" for i in range(1, 97)])
        assert (bbl == bad_expected).all()
        assert float(src.tags(50)["wavelength"]) == pytest.approx(SYNTHETIC_HSI.bands[49].center_nm)
        assert msk.crs == src.crs and msk.transform == src.transform
        labels = msk.read(1)
    assert set(np.unique(labels)) <= {0, 1, MASK_NODATA}
    # The plume multiplies radiance by exp(-depth * signature): check it on the source scene.
    drawn = render_plume_scene(TINY_PLUMES, 0)
    signature = plume_signature()
    peak = int(np.argmax(signature))
    assert 2250 < SYNTHETIC_HSI.bands[peak].center_nm < 2380 and signature[peak] > 0.5
    assert signature[int(np.argmin(np.abs(SYNTHETIC_HSI.wavelengths - 600)))] < 1e-3
    strong = drawn["depth"] > 0.3
    assert strong.any() and (drawn["mask"][strong] == 1).all()
    again = render_plume_scene(TINY_PLUMES, 0)
    assert np.array_equal(again["radiance"], drawn["radiance"])  # deterministic


# ----------------------------------------------------------------------------- models
def test_wavelength_conv_interpolates_masks_padding_and_rejects_sar() -> None:
    torch.manual_seed(0)
    conv = WavelengthConv2d(4, kernel_size=1, spectral_step_nm=10.0)
    on_node = conv.band_weights(torch.tensor([500.0, 510.0, 505.0]))
    nodes = conv.weight[:, [15, 16], 0, 0] / math.sqrt(3)  # 500 and 510 nm are grid nodes
    assert torch.allclose(on_node[:, :2, 0, 0], nodes)
    assert torch.allclose(on_node[:, 2, 0, 0], nodes.mean(dim=1))  # midpoint: the average
    padded = conv.band_weights(torch.tensor([500.0, float("nan")]))
    assert torch.equal(padded[:, 1], torch.zeros_like(padded[:, 1]))
    with pytest.raises(UnknownWavelengthError, match="outside"):
        conv.band_weights(torch.tensor([500.0, 5.5e7]))  # Sentinel-1 VV
    image = torch.randn(2, 3, 5, 5)
    per_sample = torch.tensor([[500.0, 600.0, 700.0], [800.0, 900.0, 1000.0]])
    mixed = conv(image, per_sample)
    assert torch.allclose(mixed[1:], conv(image[1:], per_sample[1]), atol=1e-6)


@pytest.mark.parametrize("name", HSI_MODELS)
def test_models_take_any_band_set_and_size(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    hsi = torch.linspace(420.0, 2450.0, 60)
    height, width = (27, 10) if name != "smarties_tiny_hsi_seg" else (32, 16)
    with torch.no_grad():
        out = model(torch.randn(2, 60, height, width), hsi)
    assert out.shape == (2, 2, height, width) and torch.isfinite(out).all()
    twin = model_from_config(model_config(model)).eval()
    twin.load_state_dict(model.state_dict())
    image = torch.randn(1, 60, 32, 32)
    with torch.no_grad():
        assert torch.equal(twin(image, hsi), model(image, hsi))


def test_hyper_changes_are_where_the_design_puts_them() -> None:
    hyper, plain = create_model("hyperseg_tiny"), create_model("segformer_tiny")
    assert isinstance(hyper, HyperSegFormer) and hyper.stride == 16 and plain.stride == 32
    assert hyper.encoder.patch_embed1.proj.stride == (2, 2)
    for stage in (2, 3, 4):  # a 1x1 mixing before every later patch embedding
        mixing = getattr(hyper.encoder, f"patch_embed{stage}")[0]
        assert isinstance(mixing, torch.nn.Conv2d) and mixing.kernel_size == (1, 1)
        assert not isinstance(getattr(plain.encoder, f"patch_embed{stage}"), torch.nn.Sequential)
    assert hyper.spectral.bands.kernel_size == 1 and plain.spectral.kernel_size == 7
    assert plain.spectral.stride == 4
    # Upscaling block: nearest 2x then two convs that halve the decoder's 64 channels.
    assert hyper.upscale[0].mode == "nearest" and hyper.upscale.out_channels == 32
    features = hyper.encoder(torch.randn(1, 32, 64, 64))[2:]
    assert [f.shape[-1] for f in features] == [32, 16, 8, 4]  # strides 2/4/8/16
    shape = standardize_pixels(torch.randn(1, 5, 2, 2) * 3 + 7)
    assert torch.allclose(shape.mean(dim=1), torch.zeros(1, 2, 2), atol=1e-5)


# ----------------------------------------------------------------------------- matched filter
def test_matched_filter_estimates_depth_and_picks_the_f1_threshold() -> None:
    rng = np.random.default_rng(0)
    bands, size = 12, 40
    mean = np.linspace(0.2, 0.4, bands)
    mixing = rng.normal(size=(bands, 3)) * 0.02
    cube = mean[:, None, None] + np.einsum("bk,khw->bhw", mixing, rng.normal(size=(3, size, size)))
    cube += 0.002 * rng.normal(size=cube.shape)
    signature = np.exp(-0.5 * ((np.arange(bands) - 8) / 1.5) ** 2)
    depth = np.zeros((size, size))
    depth[5:12, 5:12] = 0.2
    observed = cube * np.exp(-depth[None] * signature[:, None, None])
    mf = MatchedFilter(signature)
    scores = mf.scores(observed)
    assert np.median(scores[5:12, 5:12]) == pytest.approx(0.2, rel=0.15)
    assert abs(np.median(scores[20:, 20:])) < 0.02
    mask = (depth > 0).astype(np.uint8)
    threshold = mf.fit_threshold([observed], [mask])
    assert 0.03 < threshold < 0.2 and _f1([mf.predict(observed)], [mask]) > 0.95
    best, f1 = best_f1_threshold(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 1, 0, 1]))
    assert best == pytest.approx(0.4) and f1 == pytest.approx(1.0)
    covariance, _ = ledoit_wolf_covariance(torch.randn(500, 4, dtype=torch.float64))
    assert torch.allclose(covariance, covariance.T)
    # By hand (Ledoit & Wolf 2004): S = diag(2, 1/2), target 5/4 I,
    # delta = (0.75^2 + 0.75^2) / 2 = 9/16, beta = ((34/4 - 17/4) / 4) / 2 = 17/32 -> 17/18.
    points = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    covariance, shrinkage = ledoit_wolf_covariance(points)
    assert shrinkage == pytest.approx(17 / 18)
    expected = torch.diag(torch.tensor([2.0, 0.5], dtype=torch.float64)) / 18
    torch.testing.assert_close(covariance, expected + 17 / 18 * 1.25 * torch.eye(2).double())
    with pytest.raises(ValueError, match="bands"):
        mf.scores(observed[:5])


# ----------------------------------------------------------------------------- data and task
def test_datamodule_drops_bad_bands_and_oversamples_positive_windows() -> None:
    datamodule = HyperspectralDataModule(
        plume_world=TINY_PLUMES,
        patch_size=16,
        batch_size=4,
        samples_per_epoch=400,
        candidate_windows=64,
        positive_weight=5.0,
        stats_samples=8,
        val_samples=4,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    bad = in_windows(SYNTHETIC_HSI.wavelengths, WATER_VAPOUR_WINDOWS_NM)
    assert datamodule.bands == [
        b.name for b, f in zip(SYNTHETIC_HSI.bands, bad, strict=True) if not f
    ]
    stats = datamodule.band_stats[datamodule.stats_key]
    assert len(stats.mean) == 96 - bad.sum() and stats.percentiles == (1.0, 99.0)
    facts = datamodule.data_facts()  # what a task records as its stage: kept and dropped bands
    assert facts.sensors == {datamodule.stats_key: datamodule.bands}
    dropped = [b.name for b, f in zip(SYNTHETIC_HSI.bands, bad, strict=True) if f]
    assert facts.bad_bands == {datamodule.stats_key: dropped}
    share = datamodule.positive_share
    assert 0.0 < share < 1.0
    sampler = datamodule.train_dataloader().sampler
    drawn = datamodule.sample_weights[list(sampler)]
    oversampled = float((drawn > 1.0).double().mean())
    expected = 5 * share / (5 * share + 1 - share)
    assert oversampled == pytest.approx(expected, abs=0.08) and oversampled > share
    batch = next(iter(datamodule.val_dataloader()))
    assert batch["image"].shape[1] == len(datamodule.bands)
    assert set(batch["mask"].unique().tolist()) <= {-1, 0, 1}


def test_augmentation_moves_image_and_mask_together() -> None:
    mask = torch.randint(0, 2, (6, 8, 8))
    batch = {"image": mask[:, None].float().repeat(1, 3, 1, 1), "mask": mask, "valid": mask > 0}
    out = augment_batch(batch, torch.Generator().manual_seed(1))
    assert torch.equal(out["image"][:, 0].long(), out["mask"])
    assert torch.equal(out["valid"], out["mask"] > 0)
    assert not torch.equal(out["mask"], mask)  # something moved
    assert sorted(out["mask"].sum(dim=(1, 2)).tolist()) == sorted(mask.sum(dim=(1, 2)).tolist())


def test_binary_and_multiclass_losses_and_metrics() -> None:
    task = HyperspectralSegmentationTask(model="hyperefficientvit_tiny", num_classes=2)
    output = torch.zeros(1, 2, 2, 2)
    output[0, 1] = torch.tensor([[3.0, -3.0], [2.0, 0.0]])
    batch = {"mask": torch.tensor([[[1, 0], [0, -1]]]), "valid": torch.ones(1, 2, 2, dtype=bool)}
    loss, probs, target = task.loss_and_targets(output, batch)
    logits = torch.tensor([3.0, -3.0, 2.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.tensor([1.0, 0, 0])
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    task.val_metrics.update(probs, target)
    values = task.val_metrics.compute()
    assert values["val/precision"].item() == pytest.approx(0.5)  # 1 TP, 1 FP
    assert values["val/recall"].item() == pytest.approx(1.0)
    assert values["val/f1"].item() == pytest.approx(2 / 3, rel=1e-4)
    assert values["val/iou"].item() == pytest.approx(0.5)
    # The positive pixel is scored above both negatives: precision 1 at full recall.
    assert values["val/auprc"].item() == pytest.approx(1.0)
    multi = HyperspectralSegmentationTask(model="hyperefficientvit_tiny", num_classes=3)
    assert not multi.binary and multi.model.num_outputs == 3
    out3 = torch.randn(1, 3, 2, 2)
    loss3 = multi.loss_and_targets(out3, {"mask": torch.tensor([[[0, 1], [2, -1]]])})[0]
    manual = torch.nn.functional.cross_entropy(
        out3, torch.tensor([[[0, 1], [2, -1]]]), ignore_index=-1
    )
    assert loss3.item() == pytest.approx(manual.item())
    with pytest.raises(ValueError, match="outputs"):
        HyperspectralSegmentationTask(
            model="hyperseg_tiny", num_classes=3, model_args={"num_outputs": 2}
        )


# ----------------------------------------------------------------------------- must-show
@pytest.fixture(scope="module")
def trained_plume_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """hyperefficientvit_tiny trained for 140 steps (fixed seed) on the synthetic plume world."""
    pl.seed_everything(0)
    datamodule = HyperspectralDataModule(
        plume_world=PLUME_WORLD, patch_size=32, batch_size=8, samples_per_epoch=8 * 140,
        candidate_windows=256, stats_samples=32, val_samples=8,
    )  # fmt: skip
    task = HyperspectralSegmentationTask(
        model="hyperefficientvit_tiny", lr=3e-3, pos_weight=3.0, scheduler="constant"
    )
    _trainer(tmp_path_factory.mktemp("plume_run"), 140).fit(task, datamodule=datamodule)
    task.eval()
    return {"task": task, "datamodule": datamodule}


def test_tiny_model_beats_the_matched_filter_on_plume_scenes(trained_plume_model: dict) -> None:
    task, datamodule = trained_plume_model["task"], trained_plume_model["datamodule"]
    images, masks = plume_scene_files(datamodule.data_root)
    names = SYNTHETIC_HSI.band_names
    keep = [names.index(n) for n in datamodule.bands]
    cubes = [rasterio.open(p).read().astype(np.float32)[keep] for p in images]
    labels = [rasterio.open(p).read(1) for p in masks]
    matched = MatchedFilter(plume_signature()[keep])
    matched.fit_threshold(cubes[:-2], labels[:-2])  # threshold chosen on the training scenes
    stats = datamodule.band_stats[datamodule.stats_key]
    waves = torch.tensor(stats.wavelengths)
    with torch.no_grad():
        model_masks = [
            (task.probabilities(task(stats.normalize(torch.from_numpy(c)[None], waves), waves))
             [0] > 0.5).numpy()
            for c in cubes[-2:]
        ]  # fmt: skip
    model_f1 = _f1(model_masks, labels[-2:])
    baseline_f1 = _f1([matched.predict(c) for c in cubes[-2:]], labels[-2:])
    print(f"held-out F1: hyperefficientvit_tiny {model_f1:.3f}, matched filter {baseline_f1:.3f}")
    assert 0.4 < baseline_f1 < 0.9  # the baseline works, but confusers and noise cost it
    assert model_f1 > baseline_f1 + 0.05


def test_hub_push_and_rsfm_tile_write_a_plume_map(
    trained_plume_model: dict, tmp_path: Path
) -> None:
    task, datamodule = trained_plume_model["task"], trained_plume_model["datamodule"]
    hub = tmp_path / "hub"
    push(task, "plume-tiny", version="1.0", hub=str(hub))  # facts from task.task_facts()
    model = load("plume-tiny", hub=str(hub))
    assert (model.rsfm_card.task, model.rsfm_card.output) == ("segmentation", "classes")
    card_bands = model.rsfm_card.sensors[datamodule.stats_key].bands
    assert len(card_bands) == len(datamodule.bands)  # bad bands stay out of the card
    images, masks = plume_scene_files(datamodule.data_root)
    out = tmp_path / "plume_map.tif"
    code = main(["tile", "plume-tiny", str(images[-1]), str(out), "--hub", str(hub),
                 "--tile-size", "32", "--overlap", "8"])  # fmt: skip
    assert code == 0
    with rasterio.open(images[-1]) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and dst.count == 1
        plume_map = dst.read(1)
    truth = rasterio.open(masks[-1]).read(1)
    assert set(np.unique(plume_map)) <= {0, 1}
    assert _f1([plume_map == 1], [truth]) > 0.5  # a plume map, not noise


# ----------------------------------------------------------------------------- real cubes
def _tile_with(task: HyperspectralSegmentationTask, stats_key: str, dm, path: Path, out: Path):
    stats = dm.band_stats[stats_key]
    waves = torch.tensor(stats.wavelengths)
    with rasterio.open(path) as src:
        described = [(d or "").upper() for d in src.descriptions]
    if all(described):
        bands = [described.index(n.upper()) + 1 for n in dm.bands or stats.band_names]
    else:
        bands = [dm._datasets[0]._items[0][0].band_indexes[i] for i in range(len(waves))]

    def predict(image: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return task(image, waves).softmax(dim=1)

    norm = lambda image: stats.normalize(image, waves)  # noqa: E731
    return tile_raster(predict, path, out, bands=bands, tile_size=32, overlap=8,
                       output="classes", normalize=norm, num_classes=task.model.num_outputs,
                       progress=False, resume=False)  # fmt: skip


def test_enmap_tile_trains_a_step_and_tiles(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "enmap_potsdam"
    image, label = (
        folder / "enmap_potsdam_tile_128_0_image.tif",
        folder / "enmap_potsdam_tile_128_0_label.tif",
    )
    names = good_band_names(image, None)
    assert names is not None and 200 < len(names) < 224  # bad bands flagged in the file dropped
    datamodule = HyperspectralDataModule(
        images=[str(image)], labels=[str(label)], num_classes=5, label_offset=1,
        patch_size=16, batch_size=2, samples_per_epoch=2, candidate_windows=16,
        stats_samples=4, val_samples=2, positive_classes=[4],
    )  # fmt: skip
    task = HyperspectralSegmentationTask(model="hyperseg_tiny", num_classes=5)
    _trainer(tmp_path, 1).fit(task, datamodule=datamodule)
    assert task.trainer.global_step == 1
    assert len(task.band_stats[datamodule.stats_key]["wavelengths"]) == len(names)
    out = _tile_with(task, datamodule.stats_key, datamodule, image, tmp_path / "enmap.tif")
    with rasterio.open(out) as dst, rasterio.open(image) as src:
        assert dst.crs == src.crs and (dst.width, dst.height) == (32, 32)
        assert set(np.unique(dst.read(1))) <= set(range(5))


def test_neon_cube_needs_the_explicit_band_mapping(shared_data: Path, tmp_path: Path) -> None:
    cube = (
        shared_data
        / "neon_harv_hsi_rgb"
        / "2019_HARV_6_726000_4699000_image_crop_hyperspectral_2019_crs32618.tif"
    )
    assert len(NEON_AOP_369) == 369
    with pytest.raises(Exception, match="wavelength"):
        HyperspectralDataModule(images=[str(cube)], labels=[str(cube)], num_classes=2).setup("fit")
    with rasterio.open(cube) as src:  # a brightness-based 2-class label on the cube's grid
        nir = src.read(90)
        label = (nir > np.median(nir)).astype(np.uint8)[None]
        write_geotiff(tmp_path / "label.tif", label, crs=src.crs, res=src.res[0],
                      origin=(src.bounds.left, src.bounds.top))  # fmt: skip
    datamodule = HyperspectralDataModule(
        images=[str(cube)], labels=[str(tmp_path / "label.tif")], sensor=NEON_AOP_369.name,
        num_classes=2, patch_size=8, batch_size=2, samples_per_epoch=2, candidate_windows=8,
        stats_samples=4, val_samples=2,
    )  # fmt: skip
    task = HyperspectralSegmentationTask(model="hyperefficientvit_tiny")
    _trainer(tmp_path, 1).fit(task, datamodule=datamodule)
    assert task.trainer.global_step == 1 and datamodule.bands is None  # no bbl tags: all kept
    out = _tile_with(task, datamodule.stats_key, datamodule, cube, tmp_path / "neon.tif")
    with rasterio.open(out) as dst:
        assert (dst.width, dst.height) == (10, 27) and set(np.unique(dst.read(1))) <= {0, 1}


# ----------------------------------------------------------------------------- CLI config
@pytest.mark.parametrize("name", ["quickstart", "emit_methane"])
def test_config_twins_fit_from_the_cli(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the loggers write under the working directory
    config = REPO / "tests" / "conf" / f"hyperspectral_{name}.yaml"
    code = main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path)])
    assert code == 0
    if name == "emit_methane":
        return  # no logger or checkpoints in that twin: it only has to run
    ckpt = torch.load(next(tmp_path.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert ckpt["rsfm_model_config"]["name"] == "hyperseg_tiny"
    assert ckpt["rsfm_task"]["class_names"] == ["background", "plume"]
    tuned = TaskFacts.from_dict(ckpt["rsfm_task"]).stage("fine-tuning")
    assert list(tuned.sensors) == list(ckpt["rsfm_band_stats"])  # the one sensor it was fed
    assert "val/f1" in next(tmp_path.rglob("metrics.csv")).read_text()

"""Remote-sensing CLIP: open_clip towers, spectral tower, losses, metrics, export, purification."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import open_clip
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasters import write_geotiff
from torch.utils.data import DataLoader

import rsfm.hub
from rsfm.band_stats import BandStats
from rsfm.curation.caption_purification import (
    caption_band_stats,
    purify_manifest,
    purify_records,
    resolve_threshold,
)
from rsfm.data.captions import CaptionDataset, CaptionRecord, read_caption_manifest
from rsfm.data.collate import collate_samples
from rsfm.evaluation.retrieval import (
    group_texts_by_image,
    recall_at_k,
    retrieval_metrics,
    zero_shot_accuracy,
)
from rsfm.inference.command import make_predict_fn
from rsfm.inference.engine import tile_raster
from rsfm.models import create_model, model_config, model_from_config
from rsfm.models.clip import RSCLIP, clip_image_features, select_rgb_bands
from rsfm.sensors import get_sensor
from rsfm.tasks.clip import CLIPTask, export_open_clip_checkpoint

REPO = Path(__file__).resolve().parents[2]
S2 = get_sensor("sentinel2_l1c")
S2_WAVES = torch.from_numpy(S2.wavelengths.copy()).float()
S1_WAVES = torch.from_numpy(get_sensor("sentinel1_grd").wavelengths.copy()).float()
CAPTIONS = ["mostly forest with a river", "a mix of cropland and grassland", "bare soil"]


def _tiny(name: str = "clip_rs_tiny", **overrides: object) -> RSCLIP:
    torch.manual_seed(0)
    return create_model(name, **overrides).eval()


# ------------------------------------------------------------------------------------ models
def test_rgb_tower_takes_red_green_blue_by_wavelength() -> None:
    model = _tiny()
    image = torch.rand(2, 13, 32, 32)
    rgb = image[:, [3, 2, 1]]  # Sentinel-2 B04, B03, B02
    with torch.no_grad():
        from_s2 = model.encode_image(image, S2_WAVES, normalize=True)
        from_rgb = model.encode_image(rgb, None, normalize=True)
        text = model.encode_text(CAPTIONS, normalize=True)
    assert from_s2.shape == (2, 64) and text.shape == (3, 64)
    torch.testing.assert_close(from_s2, from_rgb)
    torch.testing.assert_close(from_s2.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(clip_image_features(model, image, S2_WAVES), from_s2)
    # A plain open_clip model works with the helper too (same weights, same features).
    torch.testing.assert_close(clip_image_features(model.clip, image, S2_WAVES), from_s2)
    # Changing a band the RGB tower does not use (B08, NIR) changes nothing.
    nir = image.clone()
    nir[:, 7] += 5.0
    torch.testing.assert_close(clip_image_features(model, nir, S2_WAVES), from_s2)


def test_rgb_tower_refuses_bands_it_cannot_map() -> None:
    model = _tiny()
    with pytest.raises(ValueError, match="no red/green/blue band"):
        model.encode_image(torch.rand(1, 2, 32, 32), S1_WAVES)
    with pytest.raises(ValueError, match="3 bands or their wavelengths"):
        model.encode_image(torch.rand(1, 4, 32, 32))
    with pytest.raises(ValueError, match="takes 32x32"):
        model.encode_image(torch.rand(1, 3, 48, 48))
    with pytest.raises(ValueError):
        select_rgb_bands(torch.rand(1, 3, 8, 8), torch.tensor([400.0, 1600.0, 2200.0]))


def test_spectral_tower_embeds_every_band_of_any_sensor() -> None:
    model = _tiny("clip_rs_s2_tiny")
    assert model.spectral and model.embed_dim == 64
    image = torch.rand(2, 13, 32, 32)
    with torch.no_grad():
        base = model.encode_image(image, S2_WAVES, normalize=True)
        nir = image.clone()
        nir[:, 7] += 1.0
        changed = model.encode_image(nir, S2_WAVES, normalize=True)
        sar = model.encode_image(torch.rand(2, 2, 64, 64), S1_WAVES, normalize=True)
    assert base.shape == (2, 64) and sar.shape == (2, 64)
    assert (base - changed).abs().max() > 1e-3  # NIR moves the embedding
    torch.testing.assert_close(base.norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="wavelengths"):
        model.encode_image(image)


def test_zero_shot_forward_and_window_embeddings() -> None:
    model = _tiny()
    image = torch.rand(2, 13, 32, 32)
    with torch.no_grad():
        logits = model(image, S2_WAVES)
        classes = model.class_embeddings()
        features = model.encode_image(image, S2_WAVES, normalize=True)
        spatial = model.forward_spatial(torch.rand(1, 13, 64, 96), S2_WAVES)
    assert logits.shape == (2, 7) and classes.shape == (7, 64)
    torch.testing.assert_close(logits, model.logit_scale.exp() * features @ classes.T)
    assert spatial.shape == (1, 64, 2, 3)
    big = torch.rand(1, 13, 64, 96)
    with torch.no_grad():
        grid = model.forward_spatial(big, S2_WAVES)
        window = model.encode_image(big[..., 32:64, 64:96], S2_WAVES, normalize=True)
    torch.testing.assert_close(grid[0, :, 1, 2], window[0])


@pytest.mark.parametrize("name", ["clip_rs_tiny", "clip_rs_s2_tiny"])
def test_config_rebuilds_the_same_model(name: str) -> None:
    model = _tiny(name, init_logit_bias=-10.0)
    config = json.loads(json.dumps(model_config(model)))
    twin = model_from_config(config).eval()
    twin.load_state_dict(model.state_dict())
    image = torch.rand(2, 13, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(twin(image, S2_WAVES), model(image, S2_WAVES))
    assert twin.logit_bias.item() == -10.0


# ------------------------------------------------------------------------------- metrics
def test_recall_at_k_and_mean_recall_by_hand() -> None:
    # 3 images; image 0 has captions 0 and 1, image 1 caption 2, image 2 caption 3.
    images = torch.eye(4)[:3]
    texts = torch.tensor(
        [[0.1, 0.9, 0, 0], [0.9, 0.1, 0, 0], [0, 1.0, 0, 0], [0.8, 0, 0.2, 0]], dtype=torch.float32
    )
    text_to_image = torch.tensor([0, 0, 1, 2])
    metrics = retrieval_metrics(images, texts, text_to_image, ks=(1, 2))
    # image->text top-1: img0 -> caption 1 (hit); img1 -> caption 2 (hit); img2 -> caption 3 (hit)
    assert metrics["image_to_text/R@1"] == pytest.approx(1.0)
    # text->image top-1: c0 -> img1 (miss), c1 -> img0, c2 -> img1, c3 -> img0 (miss): 2/4
    assert metrics["text_to_image/R@1"] == pytest.approx(0.5)
    # top-2: c0 -> {img1, img0} hit; c3 -> {img0, img2} hit
    assert metrics["text_to_image/R@2"] == pytest.approx(1.0)
    assert metrics["mean_recall"] == pytest.approx((1.0 + 1.0 + 0.5 + 1.0) / 4)
    relevant = torch.tensor([[True, False, False], [False, False, True]])
    scores = torch.tensor([[0.1, 0.5, 0.2], [0.3, 0.2, 0.1]])
    assert recall_at_k(scores, relevant, ks=(1, 2, 3, 10)) == {1: 0.0, 2: 0.0, 3: 1.0, 10: 1.0}


def test_group_texts_and_zero_shot_accuracy() -> None:
    first, owner = group_texts_by_image(torch.tensor([5, 5, 2, 9, 2]))
    assert first.tolist() == [2, 0, 3] and owner.tolist() == [1, 1, 0, 2, 0]
    classes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    images = torch.tensor([[2.0, 0.1], [0.2, 1.0], [1.0, 0.9]])
    assert zero_shot_accuracy(images, classes, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
    assert zero_shot_accuracy(images, classes, torch.tensor([0, 1, 1]), top_k=2) == 1.0


# -------------------------------------------------------------------------------- losses
def _features(batch: int = 6, dim: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(batch, dim, generator=generator), dim=1)
    text = F.normalize(image + 0.5 * torch.randn(batch, dim, generator=generator), dim=1)
    return image, text


def test_clip_and_siglip_losses_match_their_formulas() -> None:
    image, text = _features()
    task = CLIPTask(model="clip_rs_tiny")
    scale = torch.tensor(20.0)
    outputs = {"image_features": image, "text_features": text, "logit_scale": scale}
    loss = task.contrastive_loss({**outputs, "logit_bias": None})
    logits = scale * image @ text.T
    target = torch.arange(6)
    expected = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(loss, expected)

    siglip = CLIPTask(model="clip_rs_tiny", loss="siglip")
    assert siglip.model.logit_bias.item() == -10.0
    assert siglip.model.logit_scale.item() == pytest.approx(math.log(10.0))
    bias = torch.tensor(-3.0)
    loss = siglip.contrastive_loss({**outputs, "logit_bias": bias})
    signs = 2 * torch.eye(6) - 1
    expected = -F.logsigmoid(signs * (logits + bias)).sum() / 6
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="loss"):
        CLIPTask(loss="triplet")


# ------------------------------------------------------------------------ export and hub
def test_open_clip_loads_the_export_by_itself(tmp_path: Path) -> None:
    model = _tiny(init_logit_scale=3.0)
    weights = model.export_open_clip(tmp_path / "export")
    assert weights.name == "open_clip_model.safetensors"
    image = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected_image = model.encode_image(image, normalize=True)
        expected_text = model.encode_text(CAPTIONS, normalize=True)
    for name, pretrained in (
        ("rsfm_clip_tiny", str(weights)),
        (f"local-dir:{tmp_path / 'export'}", None),
    ):
        loaded, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        tokenizer = open_clip.get_tokenizer(name)
        loaded.eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded.encode_image(image, normalize=True), expected_image)
            text = loaded.encode_text(tokenizer(CAPTIONS), normalize=True)
        torch.testing.assert_close(text, expected_text)
        assert loaded.logit_scale.item() == pytest.approx(3.0)
        assert preprocess.transforms[0].size in (32, (32, 32), [32])
    with pytest.raises(ValueError, match="spectral"):
        _tiny("clip_rs_s2_tiny").export_open_clip(tmp_path / "no")


def test_hub_round_trip_and_tiled_embeddings(tmp_path: Path) -> None:
    model = _tiny("clip_rs_s2_tiny")
    ref = rsfm.hub.push(model, "clip-s2", hub=tmp_path / "hub", card={"sensors": ["sentinel2_l1c"]})
    loaded = rsfm.hub.load(str(ref), hub=tmp_path / "hub")
    image = torch.rand(2, 13, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image, S2_WAVES), model(image, S2_WAVES))
    # Tiled inference: one embedding per 32 px window, blended over a 96 x 64 raster.
    pixels = np.random.default_rng(0).random((13, 64, 96), dtype=np.float32)
    source = write_geotiff(tmp_path / "s2.tif", pixels)
    output = tmp_path / "embeddings.tif"
    tile_raster(
        make_predict_fn(loaded, S2.wavelengths, "embeddings"),
        source,
        output,
        tile_size=64,
        overlap=32,
        output="embeddings",
        progress=False,
    )
    with rasterio.open(output) as result, rasterio.open(source) as src:
        assert result.count == 64 and result.shape == (64, 96) and result.crs == src.crs
        values = result.read()
    assert np.isfinite(values).all() and values.std() > 0


def test_lightning_checkpoint_converts_for_open_clip(tmp_path: Path) -> None:
    import lightning.pytorch as pl

    task = CLIPTask(model="clip_rs_tiny", lr=1e-3, warmup_epochs=0.0, export_dir="")
    batch = {
        "image": torch.rand(4, 3, 32, 32),
        "wavelengths": torch.tensor(get_sensor("rgb").wavelengths).float().expand(4, 3),
        "caption": ["forest", "water and river", "city blocks", "bare soil"],
        "index": torch.arange(4.0),
    }
    loader = DataLoader([batch], batch_size=None)
    trainer = pl.Trainer(
        max_steps=2, logger=False, enable_progress_bar=False, default_root_dir=tmp_path,
        enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(task, train_dataloaders=loader, val_dataloaders=loader)
    ckpt = next(tmp_path.rglob("*.ckpt"))
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["rsfm_task"]["extra"]["open_clip_arch"] == "rsfm_clip_tiny"
    weights = export_open_clip_checkpoint(ckpt, tmp_path / "oc")
    loaded, _, _ = open_clip.create_model_and_transforms("rsfm_clip_tiny", pretrained=str(weights))
    task.eval()
    with torch.no_grad():
        expected = task.model.encode_image(batch["image"], normalize=True)
        torch.testing.assert_close(
            loaded.eval().encode_image(batch["image"], normalize=True), expected
        )
    assert task.model.logit_scale.item() <= math.log(100.0)


# ----------------------------------------------------------------------- synthetic captions
@pytest.fixture(scope="module")
def caption_world() -> Path:
    from rsfm.data.synthetic.captions import ensure_caption_world

    return ensure_caption_world(seed=0, n_scenes=4)


# The phrasings of the captioned world's captions, at its three GSDs (open_clip-style ensemble).
ZERO_SHOT_TEMPLATES = [
    template.format(g=g, n=noun)
    for g in (10, 20, 40)
    for noun in ("satellite image", "satellite scene", "remote sensing image")
    for template in ("a {g} m {n} of mostly {{}}", "{n} at {g} m per pixel showing mostly {{}}")
] + [f"mostly {{}}, at {g} m resolution" for g in (10, 20, 40)]
TRAIN_STEPS = 80
PURIFY_QUANTILE = 0.35
MIN_CORRUPTED_DROPPED = 0.7
MAX_CLEAN_DROPPED = 0.2


def _corrupt_manifest(world: Path, path: Path, seed: int = 0) -> tuple[Path, set[int], set[int]]:
    """Half the rows trusted; 30 % of the others get the captions of an image whose dominant
    class covers < 10 % of theirs (and vice versa): captions that describe another scene."""
    rows = [json.loads(line) for line in (world / "captions.jsonl").read_text().splitlines()]
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    trusted = set(order[: len(rows) // 2])
    untrusted = order[len(rows) // 2 :]
    corrupted = set(untrusted[: round(0.3 * len(untrusted))])
    out = []
    for i, row in enumerate(rows):
        row = {**row, "image": str(world / row["image"]), "trusted": i in trusted}
        if i in corrupted:
            donors = [
                j for j, other in enumerate(rows)
                if row["fractions"][other["label"]] < 0.1 and other["fractions"][row["label"]] < 0.1
            ]  # fmt: skip
            row["captions"] = rows[rng.choice(donors)]["captions"]
        out.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in out))
    return path, trusted, corrupted


@pytest.fixture(scope="module")
def purified(caption_world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """CLIP-RS purification of a corrupted manifest; its first model is trained on the trusted
    half, so the other half is held out for zero-shot evaluation."""
    folder = tmp_path_factory.mktemp("purification")
    manifest, trusted, corrupted = _corrupt_manifest(caption_world, folder / "noisy.jsonl")
    result = purify_manifest(
        manifest, folder / "purified.jsonl", quantile=PURIFY_QUANTILE,
        first_model="clip_rs_s2_tiny", max_steps=TRAIN_STEPS, seed=0, in_memory=True,
    )  # fmt: skip
    report = json.loads((folder / "purified.report.json").read_text())
    return {"result": result, "report": report, "trusted": trusted, "corrupted": corrupted,
            "manifest": manifest, "output": folder / "purified.jsonl"}  # fmt: skip


@pytest.mark.slow
def test_purification_drops_corrupted_captions(purified: dict) -> None:
    report, trusted, corrupted = purified["report"], purified["trusted"], purified["corrupted"]
    assert report["records_in"] == 84 and report["pairs_in"] == 3 * 84
    assert report["trusted_records"] == len(trusted) and report["trusted_pairs"] == 3 * len(trusted)
    untrusted_pairs = 3 * (84 - len(trusted))
    assert report["pairs_scored_untrusted"] == untrusted_pairs
    assert report["pairs_dropped"] == pytest.approx(PURIFY_QUANTILE * untrusted_pairs, abs=1)
    assert report["pairs_out"] == report["pairs_in"] - report["pairs_dropped"]
    dropped_rows = [d["row"] for d in report["dropped"]]
    assert all(d["score"] < report["threshold"] for d in report["dropped"])
    assert not set(dropped_rows) & trusted
    corrupted_rate = sum(r in corrupted for r in dropped_rows) / (3 * len(corrupted))
    clean = 84 - len(trusted) - len(corrupted)
    clean_rate = sum(r not in corrupted for r in dropped_rows) / (3 * clean)
    assert corrupted_rate >= MIN_CORRUPTED_DROPPED, (corrupted_rate, clean_rate)
    assert clean_rate <= MAX_CLEAN_DROPPED, (corrupted_rate, clean_rate)
    kept = read_caption_manifest(purified["output"])
    assert len(kept) == report["records_out"] == len(purified["result"].records)
    assert sum(len(r.captions) for r in kept) == report["pairs_out"]


@pytest.mark.slow
def test_training_on_synthetic_captions_improves_zero_shot(purified: dict) -> None:
    """Held-out (untrusted) images: zero-shot land-cover accuracy and retrieval of the first
    model vs the same model untrained."""
    records = read_caption_manifest(purified["manifest"])
    held_out = [r for r in records if not r.trusted and r.row not in purified["corrupted"]]
    stats = BandStats.from_dict(purified["report"]["band_stats"])
    dataset = CaptionDataset(held_out, size=32, caption_sampling="first", band_stats=stats)
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    judge = CLIPTask(model="clip_rs_s2_tiny", templates=ZERO_SHOT_TEMPLATES)

    def evaluate(model: RSCLIP) -> dict[str, float]:
        judge.model = model.eval()
        with torch.no_grad():
            out = model.forward_contrastive(batch["image"], batch["caption"], batch["wavelengths"])
            return judge.evaluate_features(
                out["image_features"], out["text_features"], batch["index"].long(), batch["label"]
            )

    torch.manual_seed(0)  # train_first_model seeds 0 before building: the same initial weights
    before = evaluate(create_model("clip_rs_s2_tiny"))
    after = evaluate(purified["result"].model)
    assert set(after) >= {"zero_shot_accuracy", "mean_recall", "image_to_text/R@10"}
    assert after["zero_shot_accuracy"] >= before["zero_shot_accuracy"] + 0.2, (before, after)
    assert after["mean_recall"] >= before["mean_recall"] + 0.2, (before, after)


def test_rewrite_hook_and_thresholds(caption_world: Path) -> None:
    records = read_caption_manifest(caption_world / "captions.jsonl")[:12]
    records = [replace(r, trusted=i < 2) for i, r in enumerate(records)]
    model = _tiny("clip_rs_s2_tiny")
    stats = caption_band_stats(records)
    calls: list[tuple[CaptionRecord, float]] = []

    def rewrite(pair: CaptionRecord, score: float) -> str | None:
        calls.append((pair, score))
        return f"rewritten: {pair.captions[0]}" if len(calls) % 2 else None

    scores = purify_records(records, model, quantile=0.0, band_stats=stats).scores
    untrusted = sorted(
        s for r, row in zip(records, scores, strict=True) if not r.trusted for s in row
    )
    cutoff = untrusted[len(untrusted) // 2]  # the median: half the untrusted pairs fail
    result = purify_records(records, model, threshold=cutoff, rewrite=rewrite, band_stats=stats)
    failing = sum(s < cutoff for s in untrusted)
    assert (
        len(calls) == failing == result.report["pairs_rewritten"] + result.report["pairs_dropped"]
    )
    assert all(len(pair.captions) == 1 and score < cutoff for pair, score in calls)
    assert result.report["pairs_rewritten"] == (failing + 1) // 2
    texts = [c for r in result.records for c in r.captions]
    assert sum(t.startswith("rewritten: ") for t in texts) == result.report["pairs_rewritten"]
    assert result.records[:2] == records[:2]  # trusted rows untouched
    assert resolve_threshold([0.1, 0.2, 0.3, 0.4], None, 0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="exactly one"):
        resolve_threshold([0.1], 0.2, 0.5)


# ------------------------------------------------------------------------- real data and CLI
@pytest.mark.shared_data
def test_rsicd_image_with_its_captions_trains_and_evaluates(
    shared_data: Path, tmp_path: Path
) -> None:
    import lightning.pytorch as pl

    from rsfm.data.datamodules.captions import CaptionDataModule

    folder = shared_data / "captions_rsicd"
    entry = json.loads((folder / "captions_rsicd_stadium_1.json").read_text())["images"][0]
    captions = [s["raw"] for s in entry["sentences"]]
    manifest = tmp_path / "rsicd.jsonl"
    row = {"image": str(folder / entry["filename"]), "captions": captions, "label": "stadium"}
    manifest.write_text(json.dumps(row) + "\n")
    data = CaptionDataModule(
        manifest=str(manifest), size=32, batch_size=8, val_fraction=0.0, caption_sampling="all"
    )
    data.setup("fit")
    assert len(data.train_dataset) == 4  # the verbatim duplicate caption is dropped
    sample = data.train_dataset[0]
    assert sample["image"].shape == (3, 32, 32) and 0.0 <= float(sample["image"].min())
    assert float(sample["image"].max()) <= 1.0 and sample["sensor"] == "rgb"
    classes = ["stadium", "farmland", "river", "forest"]
    task = CLIPTask(model="clip_rs_tiny", lr=1e-3, class_names=classes, export_dir="")
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    trainer = pl.Trainer(
        max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(task, train_dataloaders=data.train_dataloader())
    changed = [k for k, v in task.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("clip.visual.") for k in changed)
    assert any(k.startswith("clip.transformer.") for k in changed)
    metrics = trainer.validate(task, dataloaders=data.train_dataloader(), verbose=False)[0]
    assert math.isfinite(metrics["val/loss"])
    # One image: every caption retrieves it, and it retrieves one of its captions.
    assert metrics["val/text_to_image/R@1"] == 1.0 and metrics["val/image_to_text/R@1"] == 1.0
    # Zero-shot by hand: the image's embedding against the class-prompt embeddings.
    batch = next(iter(data.train_dataloader()))
    with torch.no_grad():
        waves = batch.get("wavelengths")
        image = task.eval()(batch["image"][:1], None if waves is None else waves[:1])
        prompts = task.model.class_embeddings(classes, task.templates)
    predicted = classes[int((image @ prompts.T).argmax())]
    assert metrics["val/zero_shot_accuracy"] == float(predicted == "stadium"), predicted


def test_cli_fits_the_tiny_config_and_exports_for_open_clip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsfm.cli import main

    monkeypatch.chdir(tmp_path)
    config = REPO / "tests" / "conf" / "clip_tiny.yaml"
    assert main(["fit", "--config", str(config), "--trainer.default_root_dir", str(tmp_path)]) == 0
    ckpt = torch.load(next(tmp_path.rglob("last.ckpt")), map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2 * 3
    assert ckpt["rsfm_model_config"]["name"] == "clip_rs_tiny"
    stats = next(iter(ckpt["rsfm_band_stats"].values()))
    assert len(stats["mean"]) == 4  # B02, B03, B04, B08 of the captioned world
    facts = ckpt["rsfm_task"]
    assert (facts["task"], facts["output"]) == ("image-text-contrastive", "embeddings")
    assert [s["stage"] for s in facts["stages"]] == ["pretraining"]
    assert facts["stages"][0]["datasets"][0]["files"] == ["captions.jsonl"]
    metrics = next(tmp_path.rglob("metrics.csv")).read_text()
    assert "val/mean_recall" in metrics and "val/zero_shot_accuracy" in metrics
    weights = next(tmp_path.rglob("open_clip_model.safetensors"))
    loaded, _, _ = open_clip.create_model_and_transforms("rsfm_clip_tiny", pretrained=str(weights))
    state = {k[len("model.clip.") :]: v for k, v in ckpt["state_dict"].items()}
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key])

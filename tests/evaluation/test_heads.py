"""Trained-head protocols of ``rsfm evaluate``: a UPerNet head on a frozen encoder, fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rsfm.cli import main
from rsfm.data.catalogue import DatasetInfo, chip_sample, load_dataset, register_dataset
from rsfm.data.catalogue.base import region_split
from rsfm.evaluation.heads import HeadRecipe, head_model, predict_split, train_head
from rsfm.evaluation.protocols import EncoderSpec, FrozenEncoder
from rsfm.sensors import get_sensor

STRIPES = DatasetInfo(
    name="toy_stripes",
    title="toy two-class scene for the trained-head protocols",
    folder="toy_stripes",
    task="segmentation",
    sensors=("sentinel2_l1c",),
    class_names=("land", "water"),
    split="region_split of one 64x128 scene, 32 px chips",
)


@register_dataset(STRIPES)
def _load_stripes(folder: Path, split: str) -> list[dict]:
    scene = np.load(folder / "scene.npz")
    region = region_split(64, 128, split)
    out = []
    for row in range(region.row0, region.row1 - 31, 32):
        for col in range(region.col0, region.col1 - 31, 16):
            window = (slice(None), slice(row, row + 32), slice(col, col + 32))
            out.append(
                chip_sample(scene["image"][window], "sentinel2_l1c", sample_id=f"s:{row}:{col}",
                            mask=scene["mask"][window[1:]])
            )  # fmt: skip
    return out


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    """Water stripes 16 px wide (dark in every band) in bright land, with noise."""
    rng = np.random.default_rng(0)
    mask = np.zeros((64, 128), dtype=np.int64)
    mask[:, (np.arange(128) // 16) % 2 == 0] = 1
    bands = len(get_sensor("sentinel2_l1c"))
    image = np.where(mask[None] == 1, 400.0, 2000.0) * np.ones((bands, 1, 1))
    image += rng.normal(0, 150, image.shape)
    folder = tmp_path / "data" / "toy_stripes"
    folder.mkdir(parents=True)
    np.savez(folder / "scene.npz", image=image.astype(np.float32), mask=mask)
    return tmp_path / "data"


def _splits(root: Path):
    train, test = (
        load_dataset("toy_stripes", "train", root),
        load_dataset("toy_stripes", "test", root),
    )
    stats = train.compute_band_stats()
    train.band_stats = test.band_stats = stats
    return train, test


def test_a_frozen_head_learns_and_leaves_the_encoder_untouched(data_root: Path) -> None:
    train, test = _splits(data_root)
    frozen = FrozenEncoder(EncoderSpec("random:smarties_tiny"), seed=0)
    before = {k: v.clone() for k, v in frozen.encoder.state_dict().items()}
    model = head_model(frozen.config, frozen.encoder, train.info, seed=0)
    recipe = HeadRecipe(steps=40, batch_size=4, crop=32)
    losses = train_head(model, train, "frozen_head", seed=0, recipe=recipe)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    for key, value in model.encoder.state_dict().items():
        assert torch.equal(value, before[key]), key  # frozen: bit-identical weights
    scores, target = predict_split(model, test)
    accuracy = float((scores.argmax(1) == target).float().mean())
    assert accuracy > 0.9  # dark stripes vs bright land; chance is 0.5


def test_finetune_trains_the_encoder_too(data_root: Path) -> None:
    train, _ = _splits(data_root)
    frozen = FrozenEncoder(EncoderSpec("random:smarties_tiny"), seed=0)
    model = head_model(frozen.config, frozen.encoder, train.info, seed=0)
    train_head(model, train, "finetune", seed=0, recipe=HeadRecipe(steps=3, batch_size=2, crop=32))
    changed = [
        k for k, v in model.encoder.state_dict().items()
        if not torch.equal(v, frozen.encoder.state_dict()[k])
    ]  # fmt: skip
    assert any(k.startswith("blocks.") for k in changed)
    assert frozen.encoder.training is False  # the evaluated encoder itself is never changed


def test_evaluate_command_reports_the_head_protocols(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["evaluate", "--encoder", "random:smarties_tiny", "--dataset", "toy_stripes",
            "--protocol", "frozen_head", "finetune", "--seeds", "0", "--head-steps", "25",
            "--data-root", str(data_root), "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    rows = {(r["encoder"], r["protocol"], r["metric"]): r["mean"] for r in record["summary"]}
    assert rows[("random:smarties_tiny", "frozen_head", "mIoU")] > 0.7
    assert ("random:smarties_tiny", "finetune", "mIoU") in rows
    assert not any(encoder == "raw" for encoder, _, _ in rows)  # no head on raw spectra
    assert record["head_steps"] == 25
    assert "| frozen_head mIoU |" in (out / "results.md").read_text()

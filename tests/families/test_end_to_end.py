"""The whole path on CPU: embedded default -> fine-tune -> checkpoint -> hub push -> pull -> load
-> tiled inference."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch

from rsfm.cli import main
from rsfm.data.datamodules.labelled import LabelledGeoDataModule
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.world import ensure_synthetic_world, scene_files
from rsfm.hub import load, pull, push_checkpoint
from rsfm.hub.card import ModelCard
from rsfm.tasks.segmentation import SegmentationTask

REPO = Path(__file__).resolve().parents[2]
TINY_WORLD = SyntheticWorldConfig(seed=0, n_scenes=3, scene_size_m=960)


def test_train_push_pull_load_tile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pl.seed_everything(0)
    datamodule = LabelledGeoDataModule(
        task="segmentation",
        synthetic=TINY_WORLD,
        patch_size=32,
        batch_size=8,
        samples_per_epoch=32,
        val_samples=8,
        stats_samples=16,
    )
    task = SegmentationTask(
        model="smarties_tiny_seg_linear",
        num_classes=7,
        mode="full",
        lr=2e-3,
        weights="smarties-tiny@1.0.0",  # fine-tune the synthetic-world encoder
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path / "run",
    )
    trainer.fit(task, datamodule=datamodule)
    ckpt = Path(trainer.checkpoint_callback.best_model_path)

    first_hub, second_hub = tmp_path / "hub_a", tmp_path / "hub_b"
    push_checkpoint(ckpt, "seg-tiny", version="1.0", hub=str(first_hub))
    pull("seg-tiny", str(first_hub), str(second_hub))
    model = load("seg-tiny", hub=str(second_hub))

    # Bit-identical outputs after the round trip.
    image = torch.randn(2, 13, 32, 32)
    wavelengths = torch.as_tensor(
        ensure_card_wavelengths(model.rsfm_card, "sentinel2_l1c"), dtype=torch.float32
    )
    task.model.eval()
    with torch.no_grad():
        assert torch.equal(model(image, wavelengths), task.model(image, wavelengths))

    # Tiled inference on a whole synthetic Sentinel-2 scene with a nodata wedge.
    root = ensure_synthetic_world(config=TINY_WORLD)
    scene = scene_files(root, "sentinel2_l1c")[-1]
    out = tmp_path / "landcover.tif"
    png = tmp_path / "landcover.png"
    code = main(
        [
            "tile",
            "seg-tiny",
            str(scene),
            str(out),
            "--hub",
            str(second_hub),
            "--tile-size",
            "32",
            "--overlap",
            "8",
            "--plot",
            str(png),
        ]
    )
    assert code == 0 and out.is_file() and png.stat().st_size > 0
    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.width, dst.height) == (src.width, src.height)
        classes = dst.read(1)
        source_valid = src.read_masks(1) > 0
        assert set(np.unique(classes[source_valid])) <= set(range(7))
        assert (classes[~source_valid] == dst.nodata).all()
        assert (~source_valid).any()  # the last scene carries a swath-edge wedge
    labels = rasterio.open(scene_files(root, "labels")[-1]).read(1)
    agreement = (classes[source_valid] == labels[source_valid]).mean()
    assert agreement > 0.3  # trained, not random (7 classes: chance is about 0.14)


def ensure_card_wavelengths(card: ModelCard, sensor: str) -> list[float]:
    """The wavelengths of one sensor's bands recorded in a model card."""
    return card.sensors[sensor].wavelengths

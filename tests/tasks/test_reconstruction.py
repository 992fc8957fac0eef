"""The MAE reconstruction picture: panels, pasted visible patches, one row per sensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rsfm.models.layers.spectral import patchify
from rsfm.models.registry import create_model
from rsfm.sensors import get_sensor, rgb_band_indices
from rsfm.tasks.reconstruction import (
    PANELS,
    reconstruction_rows,
    render_rows,
    unpatchify,
)


def _batch() -> dict:
    torch.manual_seed(0)
    s2, s1, naip = (get_sensor(n) for n in ("sentinel2_l1c", "sentinel1_grd", "naip"))
    waves = torch.full((3, len(s2)), float("nan"))
    waves[:2] = torch.as_tensor(s2.wavelengths, dtype=torch.float32)
    waves[2, : len(naip)] = torch.as_tensor(naip.wavelengths, dtype=torch.float32)
    return {
        "image": torch.randn(3, len(s2), 32, 32),
        "wavelengths": waves,
        "sensor": ["sentinel2_l1c", "sentinel2_l1c", "naip"],
        "pair_image": torch.randn(3, len(s1), 32, 32),
        "pair_wavelengths": torch.as_tensor(s1.wavelengths, dtype=torch.float32),
        "pair_sensor": ["sentinel1_grd"] * 3,
    }


def test_unpatchify_inverts_patchify() -> None:
    image = torch.randn(2, 3, 16, 24)
    assert torch.equal(unpatchify(patchify(image, 8), (2, 3), 8), image)


def test_display_bands_pick_rgb_for_optical_and_one_band_for_sar() -> None:
    s2 = get_sensor("sentinel2_l1c")
    assert [s2.bands[i].name for i in rgb_band_indices(s2.wavelengths.astype(float))] == [
        "B04",
        "B03",
        "B02",
    ]
    assert rgb_band_indices(get_sensor("sentinel1_grd").wavelengths.astype(float)) == [0]


def test_rows_paste_visible_patches_and_hide_masked_ones(tmp_path: Path) -> None:
    model = create_model("smarties_tiny", norm_pix_loss=False).eval()
    with torch.no_grad():
        rows = reconstruction_rows(model, _batch(), seed=3)
    assert [name for name, _ in rows] == ["sentinel2_l1c", "naip", "sentinel1_grd"]
    for name, (given, masked, pasted, target) in rows:
        hidden = np.isnan(masked)
        assert 0.6 < hidden.mean() < 0.9, name  # 75 % of the patches are masked
        np.testing.assert_array_equal(pasted[~hidden], target[~hidden])  # visible pasted back
        assert not np.allclose(pasted[hidden], target[hidden])  # masked ones are predicted
        assert pasted[hidden].std() > 0  # a non-constant reconstruction
        assert given.shape == target.shape == ((32, 32, 3) if name != "sentinel1_grd" else (32, 32))
    picture = render_rows(rows, tmp_path / "r.png", "epoch 0")
    with Image.open(tmp_path / "r.png") as png:
        assert png.size[0] > png.size[1]  # 4 panels wide, 3 rows high
        assert png.size == (picture.shape[1], picture.shape[0])
    assert len(PANELS) == 4


@pytest.mark.parametrize("folder", [None, "custom"])
def test_callback_writes_a_png_per_validation_epoch(tmp_path: Path, folder: str | None) -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    from rsfm.tasks.mae import MAEPretrainTask
    from rsfm.tasks.reconstruction import MAEReconstructionPlot

    class Loader(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> dict:
            batch = _batch()
            return {k: (v[index % 3] if torch.is_tensor(v) and v.ndim > 1 else v)
                    for k, v in batch.items() if k in ("image", "wavelengths")}  # fmt: skip

    loader = torch.utils.data.DataLoader(Loader(), batch_size=2)
    callback = MAEReconstructionPlot(folder=str(tmp_path / folder) if folder else None)
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=TensorBoardLogger(tmp_path, name="tb"),
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(MAEPretrainTask(lr=1e-3), loader, loader)
    out = Path(tmp_path / folder) if folder else Path(trainer.log_dir) / "reconstructions"
    assert sorted(p.name for p in out.glob("*.png")) == [
        "epoch_000.png",
        "epoch_001.png",
        "latest.png",
    ]
    events = list(Path(trainer.log_dir).glob("events.out.tfevents.*"))
    assert events and max(e.stat().st_size for e in events) > 10_000  # the image was logged

"""Bad input during training: clear file-named errors, skipped windows counted, no half files."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from rasters import write_geotiff

from rsfm.data.datamodules.pretrain import GeoDataModule, RasterSource
from rsfm.data.errors import BandMismatchError, NonFiniteError, UnreadableRasterError
from rsfm.tasks.checkpoint_io import AtomicCheckpointIO
from rsfm.tasks.mae import MAEPretrainTask


def _trainer(root: Path, **kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        enable_progress_bar=False,
        default_root_dir=root,
        plugins=[AtomicCheckpointIO()],
        **kwargs,
    )


def _fit(root: Path, path: Path, sensor: str = "s2", **dm_kwargs) -> pl.Trainer:
    dm = GeoDataModule(
        sources=[RasterSource(paths=[str(path)], sensor=sensor)],
        patch_size=16,
        batch_size=4,
        samples_per_epoch=8,
        val_samples=4,
        stats_samples=16,
        **dm_kwargs,
    )
    trainer = _trainer(root, logger=pl.loggers.CSVLogger(root, name="logs"))
    trainer.fit(MAEPretrainTask(model="smarties_tiny", lr=1e-3), datamodule=dm)
    return trainer


def _written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.suffix in {".ckpt", ".tmp"}]


def test_truncated_file_fails_with_its_name_and_writes_no_checkpoint(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(1, 60000, (13, 64, 64)).astype(np.uint16)
    path = write_geotiff(tmp_path / "cut.tif", noise, tiled=True)
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)
    with pytest.raises(UnreadableRasterError, match="cut.tif"):
        _fit(tmp_path / "run", path)
    assert _written(tmp_path / "run") == []


def test_nan_pixels_fail_with_the_file_name(tmp_path: Path) -> None:
    data = np.random.default_rng(1).random((13, 32, 32)).astype(np.float32)
    data[:, ::8, ::8] = np.nan  # every window holds some NaN pixels
    path = write_geotiff(tmp_path / "nan.tif", data)
    with pytest.raises(NonFiniteError, match="nan.tif"):
        _fit(tmp_path / "run", path, normalize=False)
    assert _written(tmp_path / "run") == []


def test_band_count_mismatch_fails_before_training(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "five.tif", np.ones((5, 32, 32), dtype=np.uint16))
    with pytest.raises(BandMismatchError, match="five.tif"):
        _fit(tmp_path / "run", path)


def test_all_nodata_windows_are_skipped_counted_and_logged(tmp_path: Path) -> None:
    data = np.random.default_rng(2).integers(1, 10000, (13, 64, 64)).astype(np.uint16)
    data[:, :, :40] = 0  # left part is nodata: many 16 px windows hold no valid pixel
    path = write_geotiff(tmp_path / "half.tif", data, nodata=0)
    trainer = _fit(tmp_path / "run", path)
    metrics = pd.read_csv(next((tmp_path / "run").rglob("metrics.csv")))
    skipped = metrics["train/skipped_windows"].dropna().sum()
    assert skipped > 0
    assert trainer.global_step > 0


def test_atomic_checkpoint_io_leaves_no_half_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "model.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"weights": torch.arange(4)}, target)
    before = target.read_bytes()

    def dying_save(obj, handle) -> None:
        handle.write(b"partial bytes")
        raise KeyboardInterrupt  # killed mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"weights": torch.arange(8)}, target)
    assert target.read_bytes() == before  # the previous checkpoint is intact
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left behind
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["weights"], torch.arange(4))


def test_all_nodata_raster_is_refused_at_setup_with_its_name(tmp_path: Path) -> None:
    from rsfm.band_stats import BandStats
    from rsfm.data.errors import EmptyRasterError

    path = write_geotiff(tmp_path / "empty.tif", np.zeros((13, 64, 64), dtype=np.uint16), nodata=0)
    stats = BandStats(  # imposed statistics: nothing is computed that could notice the file
        band_names=[f"b{i}" for i in range(13)], wavelengths=[443.0 + 10 * i for i in range(13)],
        low=[0.0] * 13, high=[1.0] * 13, mean=[0.5] * 13, std=[0.1] * 13,
    )  # fmt: skip
    dm = GeoDataModule(
        sources=[RasterSource(paths=[str(path)], sensor="s2")], patch_size=16, normalize=False
    )
    dm.band_stats = {"s2": stats}
    with pytest.raises(EmptyRasterError, match="empty.tif: every pixel is nodata"):
        dm.setup("fit")

"""Band statistics of user files are cached keyed by the files: never beside the data, never
reused for another file of the same folder and sensor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasters import write_geotiff

from rsfm.data.datamodules.pretrain import GeoDataModule, RasterSource


def _stats(path: Path):
    datamodule = GeoDataModule(
        sources=[RasterSource(paths=[str(path)], sensor="naip")],
        patch_size=16,
        batch_size=2,
        samples_per_epoch=4,
        val_samples=2,
        stats_samples=8,
    )
    datamodule.setup("fit")
    return datamodule.band_stats["naip"]


def test_two_files_of_one_folder_get_their_own_statistics(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    unit = write_geotiff(tmp_path / "unit.tif", rng.random((4, 48, 48), dtype=np.float32))
    counts = (rng.random((4, 48, 48)) * 255).astype(np.uint8)
    dn = write_geotiff(tmp_path / "dn.tif", counts)
    unit_stats, dn_stats = _stats(unit), _stats(dn)
    assert max(unit_stats.high) <= 1.0
    assert min(dn_stats.high) > 100.0  # its own 0-255 values, not the first file's [0, 1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dn.tif", "unit.tif"]  # nothing beside
    assert _stats(unit).mean == unit_stats.mean  # the cache returns the same statistics

"""datasets/ prepare scripts on the real samples in ../shared/data (skipped when absent)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rsfm.data.datamodules.pretrain import GeoDataModule, PairSource, RasterSource

REPO = Path(__file__).resolve().parents[2]


def _load_prepare():
    spec = importlib.util.spec_from_file_location(
        "ben_prepare", REPO / "datasets" / "bigearthnet" / "prepare.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bigearthnet_prepare_stacks_band_files(shared_data: Path, tmp_path: Path) -> None:
    prepare = _load_prepare()
    original = shared_data / "bigearthnet_s1s2" / "original"
    assert prepare.main([str(original), "--out", str(tmp_path)]) == 0
    s2 = sorted((tmp_path / "S2").glob("*.tif"))
    s1 = sorted((tmp_path / "S1").glob("*.tif"))
    assert len(s2) == 1 and len(s1) == 1
    stacked_ref = shared_data / "bigearthnet_s1s2" / "stacked" / f"{s2[0].stem}_S2_12band_10m.tif"
    with rasterio.open(s2[0]) as ours, rasterio.open(stacked_ref) as ref:
        assert ours.count == 12 and ours.crs == ref.crs and ours.transform == ref.transform
        assert ours.descriptions[8] == "B8A" and "arable" in ours.tags()["LABELS"]
        band = {d: i + 1 for i, d in enumerate(ref.descriptions)}
        # 10 m bands are copied exactly; resampled 20 m bands correlate with the publisher's.
        np.testing.assert_array_equal(ours.read(2), ref.read(band["B02"]))
        corr = np.corrcoef(ours.read(5).ravel(), ref.read(band["B05"]).ravel())[0, 1]
        assert corr > 0.9
    with rasterio.open(s1[0]) as vv_vh:
        assert vv_vh.count == 2 and vv_vh.descriptions == ("VV", "VH")
    # Re-running skips what exists (no rewrite).
    mtime = s2[0].stat().st_mtime_ns
    prepare.main([str(original), "--out", str(tmp_path)])
    assert s2[0].stat().st_mtime_ns == mtime
    # The output feeds the pretraining datamodule as an S2+S1 pair.
    dm = GeoDataModule(
        pairs=[
            PairSource(
                RasterSource([str(tmp_path / "S2")], "sentinel2_l2a"),
                RasterSource([str(tmp_path / "S1")], "sentinel1_grd"),
            )
        ],
        patch_size=32,
        batch_size=2,
        samples_per_epoch=4,
        val_samples=2,
        stats_samples=4,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 12, 32, 32) and batch["pair_image"].shape == (2, 2, 32, 32)
    with pytest.raises(SystemExit):
        prepare.main([str(tmp_path / "empty_does_not_exist"), "--out", str(tmp_path)])

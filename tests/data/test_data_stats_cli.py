"""``rsfm data stats``: CLI-worded errors, honest ``n_pixels``, every pixel read is scanned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rasters import smooth, write_geotiff

from rsfm.cli import main
from rsfm.data.raster import SensorRasterDataset
from rsfm.data.stats import compute_band_stats


def _one_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_no_sensor_names_the_file_once_and_the_cli_flag(tmp_path: Path, capsys) -> None:
    path = write_geotiff(tmp_path / "untagged.tif", smooth(4, 40, 40))
    argv = ["data", "stats", str(path), "--out", str(tmp_path / "s.json")]
    assert main(argv, one_line_errors=True) == 1
    line = _one_line(capsys)
    assert line.startswith(f"rsfm data: error: {path}: no --sensor given")
    assert line.count("untagged.tif") == 1
    assert "--sensor NAME" in line and "rsfm data sensors" in line and "sensor=" not in line
    assert not (tmp_path / "s.json").exists()


def test_n_pixels_counts_the_distinct_valid_pixels_used(tmp_path: Path) -> None:
    data = smooth(4, 100, 90)
    data[:, :20, :30] = -1.0  # 600 nodata pixels
    path = write_geotiff(tmp_path / "small.tif", data, nodata=-1.0)
    dataset = SensorRasterDataset(path, sensor="naip")
    stats = compute_band_stats(
        dataset, n_samples=64, patch_size=32, max_pixels_per_patch=10**6, whole=True
    )
    assert stats.n_pixels == 100 * 90 - 600  # every pixel once, none twice
    valid = data[:, 20:, :].reshape(4, -1)  # (the block's rows hold valid pixels too)
    valid = np.concatenate([valid, data[:, :20, 30:].reshape(4, -1)], axis=1)
    np.testing.assert_allclose(stats.low, np.percentile(valid, 1.0, axis=1), rtol=1e-6)
    subset = compute_band_stats(dataset, n_samples=3, patch_size=32, max_pixels_per_patch=10**6)
    assert subset.n_pixels <= 3 * 32 * 32
    # random windows (training's default) overlap: their pixels are counted once
    overlapping = compute_band_stats(dataset, n_samples=64, patch_size=32)
    assert 0 < overlapping.n_pixels <= 100 * 90 - 600


def test_cli_n_pixels_never_exceeds_the_raster(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "scene.tif", smooth(4, 300, 250))
    out = tmp_path / "s.json"
    assert main(["data", "stats", str(path), "--sensor", "naip", "--out", str(out)]) == 0
    n_pixels = json.loads(out.read_text())["n_pixels"]
    assert 0 < n_pixels <= 300 * 250


@pytest.mark.parametrize("where", [(0, 0), (299, 249)], ids=["first", "last"])
def test_one_inf_pixel_anywhere_is_found(tmp_path: Path, capsys, where) -> None:
    data = smooth(4, 300, 250)
    data[2, where[0], where[1]] = np.inf
    path = write_geotiff(tmp_path / "inf.tif", data)
    out = tmp_path / "s.json"
    argv = ["data", "stats", str(path), "--sensor", "naip", "--out", str(out)]
    assert main(argv, one_line_errors=True) == 1
    line = _one_line(capsys)
    assert line.startswith(f"rsfm data: error: {path}: 1 NaN/inf pixels")
    assert "--nonfinite mask" in line and "nonfinite='mask'" not in line
    assert not out.exists()
    assert main([*argv, "--nonfinite", "mask"], one_line_errors=True) == 0
    saved = json.loads(out.read_text())
    assert saved["n_pixels"] <= 300 * 250 - 1 and np.isfinite(saved["high"]).all()

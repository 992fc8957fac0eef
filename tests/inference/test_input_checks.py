"""Inputs far from the training data (other units, another sensor) are flagged; --strict refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsfm.band_stats import BandStats
from rsfm.cli import main
from rsfm.hub import load_card
from rsfm.inference.input_checks import far_bands, head_sensor_notice
from rsfm.sensors import get_sensor

REPO = Path(__file__).resolve().parents[2]
HUB = REPO / "checkpoints"
MODEL = "water-s2-tiny@1.0.0"


def _stats(n: int = 4) -> BandStats:
    return BandStats(
        band_names=[f"b{i}" for i in range(n)], wavelengths=[500.0 + 100 * i for i in range(n)],
        low=[500.0] * n, high=[3500.0] * n, mean=[1500.0] * n, std=[700.0] * n,
    )  # fmt: skip


def test_far_bands_rule() -> None:
    stats, waves = _stats(), np.array([500.0, 600.0, 700.0, 800.0])
    rng = np.random.default_rng(0)
    like = rng.uniform(500, 3500, (4, 1000))
    assert far_bands(like, waves, stats) == []
    assert len(far_bands(like / 20, waves, stats)) == 4  # uint8-like: range 20x smaller
    assert len(far_bands(like * 20, waves, stats)) == 4  # 20x larger
    shifted = like + 10_000  # same spread, median beyond high + (high - low)
    assert len(far_bands(shifted, waves, stats)) == 4
    one_far = like.copy()
    one_far[0] /= 20
    assert far_bands(one_far, waves, stats) == []  # under half the bands: not flagged


def test_head_sensor_notice_names_the_trained_sensors() -> None:
    card = load_card(MODEL, HUB)
    assert head_sensor_notice(Path("x.tif"), get_sensor("sentinel2_l1c"), card) is None
    notice = head_sensor_notice(Path("x.tif"), get_sensor("naip"), card)
    assert "naip" in notice and "sentinel2_l1c" in notice and "untested" in notice


def _raster(path: Path, scale: float) -> Path:
    """A 13-band S2 L1C GeoTIFF whose values span the card's clip range, times ``scale``."""
    stats = load_card(MODEL, HUB).normalization["sentinel2_l1c"]
    rng = np.random.default_rng(0)
    low, high = np.array(stats.low)[:, None, None], np.array(stats.high)[:, None, None]
    image = (low + (high - low) * rng.uniform(size=(13, 64, 64))) * scale
    profile = dict(
        driver="GTiff", width=64, height=64, count=13, dtype="float32", crs="EPSG:32633",
        transform=from_origin(500_000, 4_500_000, 10, 10),
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image.astype(np.float32))
        dst.descriptions = tuple(get_sensor("sentinel2_l1c").band_names)
    return path


def test_tile_warns_on_other_units_and_strict_refuses(tmp_path: Path, capsys) -> None:
    good = _raster(tmp_path / "good.tif", 1.0)
    args = ["--hub", str(HUB), "--device", "cpu", "--strict"]
    assert main(["tile", MODEL, str(good), str(tmp_path / "good_map.tif"), *args]) == 0
    assert "warning" not in capsys.readouterr().err
    scaled = _raster(tmp_path / "uint8_like.tif", 1 / 20)
    out = tmp_path / "scaled_map.tif"
    assert main(["tile", MODEL, str(scaled), str(out), *args]) == 2
    err = capsys.readouterr().err
    assert "refused (--strict)" in err and "uint8_like.tif" in err and "far from" in err
    assert not out.exists()  # nothing computed, nothing written
    assert main(["tile", MODEL, str(scaled), str(out), "--hub", str(HUB), "--device", "cpu"]) == 0
    assert "warning" in capsys.readouterr().err and out.exists()


@pytest.mark.shared_data
def test_real_scenes_are_not_flagged(shared_data: Path, tmp_path: Path, capsys) -> None:
    scene = shared_data / "sen1floods11_spain" / "Spain_7370579_S2Hand.tif"
    args = ["--hub", str(HUB), "--device", "cpu", "--strict", "--tile-size", "128"]
    assert main(["tile", MODEL, str(scene), str(tmp_path / "water.tif"), *args]) == 0
    assert "warning" not in capsys.readouterr().err

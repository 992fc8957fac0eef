"""Band statistics: computed on known distributions, saved exactly, selected by wavelength."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from rasters import ORIGIN, write_geotiff

from rsfm.band_stats import BandStats
from rsfm.data.raster import SensorRasterDataset
from rsfm.data.stats import compute_band_stats, default_stats_path
from rsfm.sensors import get_sensor

X0, Y0 = ORIGIN
L8 = get_sensor("landsat8_sr")


@pytest.fixture
def known_raster(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """6 Landsat bands: uniform(0, 1000), normal(5000, 100), constants; a nodata block."""
    rng = np.random.default_rng(42)
    data = np.empty((6, 128, 128), dtype=np.float32)
    data[0] = rng.uniform(0, 1000, size=(128, 128))
    data[1] = rng.normal(5000, 100, size=(128, 128))
    for band in range(2, 6):
        data[band] = 100.0 * band
    data[:, :32, :32] = -9999.0  # nodata, must not enter the statistics
    return write_geotiff(tmp_path / "data" / "l8.tif", data, res=30, nodata=-9999), data


def test_stats_on_known_distribution(known_raster: tuple[Path, np.ndarray]) -> None:
    path, data = known_raster
    ds = SensorRasterDataset(path, sensor="landsat8_sr")
    stats = compute_band_stats(ds, n_samples=24, patch_size=64, seed=0)
    assert stats.band_names == L8.band_names and stats.sensor == "landsat8_sr"
    np.testing.assert_allclose(stats.wavelengths, L8.wavelengths)
    assert stats.percentiles == (1.0, 99.0) and 10_000 < stats.n_pixels <= 128 * 128 - 32 * 32
    assert stats.low[0] == pytest.approx(10.0, abs=8) and stats.high[0] == pytest.approx(990, abs=8)
    assert stats.mean[0] == pytest.approx(500.0, abs=15)
    assert stats.std[0] == pytest.approx(980 / np.sqrt(12), rel=0.04)  # uniform on [10, 990]
    assert stats.low[1] == pytest.approx(5000 - 2.326 * 100, abs=15)  # normal 1st percentile
    assert stats.mean[1] == pytest.approx(5000.0, abs=5) and 85 < stats.std[1] < 100  # clipped
    assert stats.mean[3] == 300.0 and stats.std[3] == 0.0 and stats.low[3] == stats.high[3]
    assert min(stats.low) > -9999.0  # nodata stayed out
    again = compute_band_stats(ds, n_samples=24, patch_size=64, seed=0)
    assert again == stats  # seeded
    assert compute_band_stats(ds, n_samples=24, patch_size=64, seed=1) != stats


def test_save_load_round_trip_is_exact(known_raster: tuple[Path, np.ndarray]) -> None:
    path, _ = known_raster
    ds = SensorRasterDataset(path, sensor="landsat8_sr")
    stats = compute_band_stats(ds, n_samples=4, patch_size=32)
    target = default_stats_path(ds)
    assert target == path.parent / "band_stats.json"
    stats.save(target)
    loaded = BandStats.load(target)
    assert loaded == stats and loaded.mean == stats.mean and loaded.percentiles == (1.0, 99.0)
    assert json.loads(target.read_text())["band_names"] == L8.band_names
    assert BandStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats


def make_stats() -> BandStats:
    return BandStats(
        band_names=["B2", "B3", "B4"],
        wavelengths=[482.5, 562.5, 655.0],
        low=[0.0, 10.0, 100.0],
        high=[100.0, 20.0, 200.0],
        mean=[50.0, 15.0, 150.0],
        std=[10.0, 2.0, 25.0],
    )


def test_normalize_clips_standardises_and_selects_by_wavelength() -> None:
    stats = make_stats()
    image = torch.tensor([[[-5.0, 60.0]], [[12.0, 99.0]], [[150.0, 175.0]]])  # [3, 1, 2]
    waves = torch.tensor([482.5, 562.5, 655.0])
    out = stats.normalize(image, waves)
    expected = torch.tensor([[[-5.0, 1.0]], [[-1.5, 2.5]], [[0.0, 1.0]]])
    torch.testing.assert_close(out, expected)
    # A reordered subset picks its own rows.
    subset = stats.normalize(image[[2, 0]], waves[[2, 0]])
    torch.testing.assert_close(subset, expected[[2, 0]])
    # numpy in, numpy out; a batch with per-sample wavelengths; NaN padding left alone.
    as_numpy = stats.normalize(image.numpy(), waves.numpy())
    assert isinstance(as_numpy, np.ndarray) and np.allclose(as_numpy, expected.numpy())
    batch = torch.stack([image, image])
    waves_b = torch.stack([waves, torch.tensor([655.0, float("nan"), 482.5])])
    out_b = stats.normalize(batch, waves_b)
    torch.testing.assert_close(out_b[0], expected)
    torch.testing.assert_close(out_b[1, 1], image[1])
    torch.testing.assert_close(out_b[1, 0], (image[0].clamp(100, 200) - 150) / 25)


def test_unknown_wavelength_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"wavelength\(s\) \[865.0\]"):
        make_stats().normalize(torch.zeros(2, 4, 4), torch.tensor([482.5, 865.0]))


def test_dataset_applies_normalization_from_path(known_raster: tuple[Path, np.ndarray]) -> None:
    path, data = known_raster
    raw = SensorRasterDataset(path, sensor="landsat8_sr", bands=["B3", "B2"])
    stats = compute_band_stats(SensorRasterDataset(path, sensor="landsat8_sr"), n_samples=4)
    saved = stats.save(path.parent / "stats.json")
    normed = SensorRasterDataset(
        path, sensor="landsat8_sr", bands=["B3", "B2"], normalization=saved
    )
    query = (slice(X0, X0 + 64 * 30), slice(Y0 - 64 * 30, Y0))
    raw_sample, sample = raw[query], normed[query]
    expected = stats.normalize(raw_sample["image"], raw_sample["wavelengths"])
    expected[:, ~raw_sample["valid"]] = 0.0
    torch.testing.assert_close(sample["image"], expected)
    assert (
        not sample["valid"][:32, :32].any() and float(sample["image"][:, :32, :32].abs().max()) == 0
    )
    assert abs(float(sample["image"][1, 40:, 40:].mean())) < 0.1  # band B2: standardised


def test_stats_do_not_depend_on_the_global_torch_rng(tmp_path: Path) -> None:
    """torchgeo's sampler picks files with the global RNG; compute_band_stats must not care."""
    rng = np.random.default_rng(0)
    for index, level in enumerate((100.0, 2000.0, 7000.0)):  # files far apart in value
        data = (level + rng.normal(0, 50, size=(6, 64, 64))).astype(np.float32)
        origin = (X0 + index * 64 * 30 * 2, Y0)
        write_geotiff(tmp_path / "files" / f"l8_{index}.tif", data, res=30, origin=origin)
    dataset = SensorRasterDataset(tmp_path / "files", sensor="landsat8_sr")
    results = []
    for global_seed in (1, 2, 3):
        torch.manual_seed(global_seed)
        results.append(compute_band_stats(dataset, n_samples=3, patch_size=16, seed=7).to_dict())
    assert results[0] == results[1] == results[2]
    state = torch.random.get_rng_state()
    compute_band_stats(dataset, n_samples=3, patch_size=16, seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    other = compute_band_stats(dataset, n_samples=3, patch_size=16, seed=8).to_dict()
    assert other != results[0]  # the seed does pick the windows

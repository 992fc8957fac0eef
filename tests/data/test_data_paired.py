"""CoRegisteredPairDataset: two sensors over their intersection, on the first's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform
from rasters import ORIGIN, UTM32N, UTM33N, ramp, write_geotiff
from torch.utils.data import DataLoader
from torchgeo.samplers import RandomGeoSampler

from rsfm.data.collate import collate_samples
from rsfm.data.paired import CoRegisteredPairDataset
from rsfm.data.raster import SensorRasterDataset
from rsfm.sensors import get_sensor

X0, Y0 = ORIGIN


def linear_field(bands: int, size: int, scale: float) -> np.ndarray:
    """Planar fields (bilinear resampling reproduces them exactly away from the edges)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) * scale
    return np.stack([-20 + 0.01 * x - 0.02 * y + b for b in range(bands)]).astype(np.float32)


def test_pair_on_first_grid_over_intersection(tmp_path: Path) -> None:
    s2 = write_geotiff(tmp_path / "s2.tif", ramp(13, 48, 48))  # 10 m
    s1_data = linear_field(2, 24, 20.0)  # 20 m, shifted 160 m east: overlaps 32 columns
    s1 = write_geotiff(tmp_path / "s1.tif", s1_data, res=20, origin=(X0 + 160, Y0))
    first = SensorRasterDataset(s2, sensor="sentinel2_l1c")
    second = SensorRasterDataset(s1, sensor="sentinel1_grd")
    pair = CoRegisteredPairDataset(first, second)
    assert pair.res == (10.0, 10.0) and second.res == (20.0, 20.0)  # the input is not modified
    np.testing.assert_allclose(pair.index.total_bounds, [X0 + 160, Y0 - 480, X0 + 480, Y0])
    x, y, _ = pair.bounds
    sample = pair[x.start : x.stop, y.start : y.stop]
    assert sample["image"].shape == (13, 48, 32) and sample["pair_image"].shape == (2, 48, 32)
    np.testing.assert_array_equal(sample["image"].numpy(), ramp(13, 48, 48)[:, :, 16:])
    s1_wave = get_sensor("sentinel1_grd").wavelengths
    np.testing.assert_array_equal(sample["pair_wavelengths"].numpy(), s1_wave)
    assert s1_wave[0] > 0 > s1_wave[1]  # VV positive, VH negative (sensors.py convention)
    assert sample["pair_sensor"] == "sentinel1_grd" and sample["sensor"] == "sentinel2_l1c"
    assert sample["pair_valid"].shape == (48, 32) and bool(sample["pair_valid"].all())
    # On the 10 m grid the 20 m plane is sampled at 10 m pixel centres: x_10 = 2 * x_20 - 0.5.
    rows, cols = np.mgrid[0:48, 0:32].astype(np.float32)
    for band in range(2):
        plane = -20 + 0.01 * (cols * 10 + 5 - 10) - 0.02 * (rows * 10 + 5 - 10) + band
        inner = (slice(2, -2), slice(2, -2))
        np.testing.assert_allclose(
            sample["pair_image"][band].numpy()[inner], plane[inner], atol=1e-3
        )


def test_second_sensor_in_another_crs_is_reprojected(tmp_path: Path) -> None:
    origin_32 = (730_000.0, 5_000_000.0)
    (cx,), (cy,) = transform(UTM32N, UTM33N, [origin_32[0] + 320], [origin_32[1] - 320])
    x0, y0 = round(cx / 10) * 10 - 320, round(cy / 10) * 10 + 320
    s2 = write_geotiff(tmp_path / "s2.tif", ramp(13, 64, 64), crs=UTM33N, origin=(x0, y0))
    s1_data = linear_field(2, 64, 10.0)
    s1 = write_geotiff(tmp_path / "s1.tif", s1_data, crs=UTM32N, origin=origin_32)
    first = SensorRasterDataset(s2, sensor="s2")
    second = SensorRasterDataset(s1, sensor="s1")
    pair = CoRegisteredPairDataset(first, second)
    assert second.crs.to_epsg() == 32632 and pair.crs.to_epsg() == 32633
    query = (slice(x0 + 160, x0 + 480), slice(y0 - 480, y0 - 160))
    sample = pair[query]
    assert sample["pair_image"].shape == (2, 32, 32) and bool(sample["pair_valid"].all())
    assert sample["transform"] == from_origin(x0 + 160, y0 - 160, 10, 10)
    expected = np.zeros((2, 32, 32), dtype=np.float32)
    reproject(
        s1_data,
        expected,
        src_transform=from_origin(*origin_32, 10, 10),
        src_crs=UTM32N,
        dst_transform=sample["transform"],
        dst_crs=UTM33N,
        resampling=rasterio.enums.Resampling.bilinear,
    )
    np.testing.assert_allclose(sample["pair_image"].numpy(), expected, atol=0.02)


def test_no_overlap_is_a_value_error(tmp_path: Path) -> None:
    a = SensorRasterDataset(write_geotiff(tmp_path / "a.tif", ramp(13, 8, 8)), sensor="s2")
    far = write_geotiff(tmp_path / "b.tif", linear_field(2, 8, 1.0), origin=(X0 + 1e4, Y0))
    with pytest.raises(ValueError, match="do not overlap"):
        CoRegisteredPairDataset(a, SensorRasterDataset(far, sensor="s1"))


def test_pair_batches_and_mixed_band_padding(tmp_path: Path) -> None:
    s2 = write_geotiff(tmp_path / "s2.tif", ramp(13, 64, 64), tiled=True)
    s1 = write_geotiff(tmp_path / "s1.tif", linear_field(2, 64, 10.0), tiled=True)
    pair = CoRegisteredPairDataset(
        SensorRasterDataset(s2, sensor="s2"), SensorRasterDataset(s1, sensor="s1")
    )
    sampler = RandomGeoSampler(pair, size=16, length=6, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(
        pair, sampler=sampler, batch_size=3, num_workers=2, collate_fn=collate_samples
    )
    for batch in loader:
        assert batch["image"].shape == (3, 13, 16, 16)
        assert batch["pair_image"].shape == (3, 2, 16, 16) and batch["pair_valid"].all()
        assert batch["pair_sensor"] == ["sentinel1_grd"] * 3
    x, y, _ = pair.bounds
    one = pair[x.start : x.start + 80, y.start : y.start + 80]
    other = dict(
        one, pair_image=one["pair_image"][:1], pair_wavelengths=one["pair_wavelengths"][:1]
    )
    batch = collate_samples([one, other])
    assert batch["pair_image"].shape == (2, 2, 8, 8)
    assert float(batch["pair_image"][1, 1].abs().sum()) == 0.0  # zero padding
    assert (
        torch.isnan(batch["pair_wavelengths"][1, 1])
        and not torch.isnan(batch["pair_wavelengths"][0]).any()
    )

"""SensorRasterDataset on tiny GeoTIFFs with known values and a real UTM CRS."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.warp import reproject, transform
from rasterio.windows import from_bounds
from rasters import ORIGIN, UTM32N, UTM33N, ramp, smooth, write_geotiff
from torch.utils.data import DataLoader
from torchgeo.samplers import GridGeoSampler, RandomGeoSampler

from rsfm.data.collate import collate_samples
from rsfm.data.errors import BandMismatchError
from rsfm.data.grid import canonical_band_name, gsd_metres
from rsfm.data.raster import SensorRasterDataset
from rsfm.sensors import get_sensor

S2 = get_sensor("sentinel2_l1c")
X0, Y0 = ORIGIN


def window(col: int, row: int, width: int, height: int, res: float = 10.0) -> tuple:
    """GeoSlice of a pixel window of a file written at ORIGIN."""
    xmin, ymax = X0 + col * res, Y0 - row * res
    return slice(xmin, xmin + width * res), slice(ymax - height * res, ymax)


@pytest.mark.parametrize("tiled", [False, True])
def test_window_equals_numpy_slice_and_georeferencing(tmp_path: Path, tiled: bool) -> None:
    data = ramp(13, 40, 48)
    path = write_geotiff(tmp_path / "s2.tif", data, tiled=tiled)
    ds = SensorRasterDataset(path, sensor="sentinel2_l1c")
    assert ds.res == (10.0, 10.0) and len(ds) == 1
    sample = ds[window(5, 7, 20, 16)]
    np.testing.assert_array_equal(sample["image"].numpy(), data[:, 7:23, 5:25].astype(np.float32))
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (13, 16, 20)
    np.testing.assert_array_equal(sample["wavelengths"].numpy(), S2.wavelengths)
    assert sample["valid"].dtype == torch.bool and bool(sample["valid"].all())
    assert sample["gsd"] == pytest.approx(10.0) and sample["sensor"] == "sentinel2_l1c"
    assert sample["transform"] == from_origin(X0 + 50, Y0 - 70, 10, 10)
    assert sample["bounds"] == (X0 + 50, Y0 - 230, X0 + 250, Y0 - 70)
    with rasterio.open(path) as src:
        assert sample["crs"] == src.crs
        win = from_bounds(*sample["bounds"], transform=src.transform)
        assert (win.col_off, win.row_off, win.width, win.height) == (5, 7, 20, 16)
        np.testing.assert_array_equal(src.read(window=win), sample["image"].numpy())


def test_window_partly_outside_file_is_invalid_there(tmp_path: Path) -> None:
    data = ramp(13, 32, 32)
    ds = SensorRasterDataset(write_geotiff(tmp_path / "a.tif", data), sensor="s2")
    sample = ds[window(24, -4, 16, 12)]  # 8 columns and 4 rows beyond the right/top edges
    valid = sample["valid"].numpy()
    assert valid.shape == (12, 16)
    assert not valid[:4].any() and not valid[:, 8:].any() and valid[4:, :8].all()
    np.testing.assert_array_equal(sample["image"][:, 4:, :8].numpy(), data[:, 0:8, 24:32])
    assert float(sample["image"][:, ~sample["valid"]].abs().sum()) == 0.0


def test_mosaic_of_adjacent_files(tmp_path: Path) -> None:
    left, right = ramp(13, 32, 32), ramp(13, 32, 32) + 60000 // 2
    write_geotiff(tmp_path / "l.tif", left)
    write_geotiff(tmp_path / "r.tif", right, origin=(X0 + 320, Y0))
    ds = SensorRasterDataset(tmp_path, sensor="s2")
    assert len(ds) == 2
    sample = ds[window(24, 0, 16, 8)]
    expected = np.concatenate([left[:, :8, 24:], right[:, :8, :8]], axis=2)
    np.testing.assert_array_equal(sample["image"].numpy(), expected)
    assert bool(sample["valid"].all())


def test_file_in_another_utm_zone_is_reprojected(tmp_path: Path) -> None:
    field = smooth(13, 64, 64)
    origin_32 = (730_000.0, 5_000_000.0)  # ~12 E: near the UTM 32/33 boundary
    path = write_geotiff(tmp_path / "z32.tif", field, crs=UTM32N, origin=origin_32)
    write_geotiff(tmp_path / "anchor.tif", ramp(13, 4, 4), crs=UTM33N, origin=(200_000.0, 4e6))
    ds = SensorRasterDataset([tmp_path / "anchor.tif", path], sensor="s2")
    assert ds.crs.to_epsg() == 32633
    (cx,), (cy,) = transform(UTM32N, UTM33N, [origin_32[0] + 320], [origin_32[1] - 320])
    cx, cy = round(cx / 10) * 10, round(cy / 10) * 10
    sample = ds[slice(cx - 160, cx + 160), slice(cy - 160, cy + 160)]
    assert sample["image"].shape == (13, 32, 32) and bool(sample["valid"].all())
    expected = np.zeros((13, 32, 32), dtype=np.float32)
    reproject(
        field,
        expected,
        src_transform=from_origin(*origin_32, 10, 10),
        src_crs=UTM32N,
        dst_transform=sample["transform"],
        dst_crs=UTM33N,
        resampling=rasterio.enums.Resampling.bilinear,
    )
    centre = (slice(None), slice(8, 24), slice(8, 24))
    np.testing.assert_allclose(sample["image"][centre].numpy(), expected[centre], rtol=0.01)
    assert np.abs(sample["image"][centre].numpy() - expected[centre]).mean() < 2.0


def test_one_file_per_band_lands_on_one_10m_grid(tmp_path: Path) -> None:
    product = tmp_path / "S2_product"
    y, x = np.mgrid[0:48, 0:48] / 48.0
    truth = (1000 + 480 * x + 960 * y).astype(np.float32)  # linear: bilinear-exact inside

    def block_mean(factor: int) -> np.ndarray:  # what a coarser detector would record
        return truth.reshape(48 // factor, factor, 48 // factor, factor).mean(axis=(1, 3))

    b02, b05, b01 = truth, block_mean(2), block_mean(6)
    write_geotiff(product / "S2_product_B02.tif", b02.astype(np.uint16), res=10)
    write_geotiff(product / "S2_product_B05.tif", b05.astype(np.uint16), res=20)
    write_geotiff(product / "S2_product_B01.tif", b01.astype(np.uint16), res=60)
    s1 = tmp_path / "S1_product"  # another sensor's product beside it is ignored
    write_geotiff(s1 / "S1_product_VV.tif", smooth(1, 48, 48)[0], res=10)
    ds = SensorRasterDataset(
        tmp_path, sensor="sentinel2_l2a", bands=["B02", "B5", "B01"], band_files=True
    )
    assert ds.res == (10.0, 10.0) and len(ds) == 1
    x, y, _ = ds.bounds
    sample = ds[x.start : x.stop, y.start : y.stop]
    assert sample["image"].shape == (3, 48, 48) and bool(sample["valid"].all())
    np.testing.assert_array_equal(sample["image"][0].numpy(), b02.astype(np.uint16))
    assert sample["image"][1:].shape == (2, 48, 48)
    for channel in (1, 2):  # upsampled bilinearly: close to the 10 m truth, centred
        upsampled = sample["image"][channel].numpy()
        assert np.corrcoef(upsampled.ravel(), truth.ravel())[0, 1] > 0.99
        assert np.abs(upsampled - truth)[6:-6, 6:-6].max() < 1.0  # no sub-pixel shift
    np.testing.assert_array_equal(
        sample["wavelengths"].numpy(),
        get_sensor("s2_l2a").select(["B02", "B05", "B01"]).wavelengths,
    )
    with pytest.raises(BandMismatchError, match="B12"):
        SensorRasterDataset(tmp_path, sensor="sentinel2_l2a", bands=["B02", "B12"], band_files=True)


def test_band_subset_and_reorder_by_description(tmp_path: Path) -> None:
    l2a = get_sensor("sentinel2_l2a")
    order = [3, 0, 11, 5, 1, 8, 2, 10, 4, 7, 6, 9]  # file order differs from the registry's
    data = ramp(12, 16, 16)
    names = [l2a.band_names[i].replace("B0", "B") for i in order]  # "B1" style in the file
    path = write_geotiff(tmp_path / "ben.tif", data, descriptions=names)
    full = SensorRasterDataset(path, sensor="sentinel2_l2a")[window(0, 0, 16, 16)]
    for registry_pos in range(len(l2a)):
        file_pos = order.index(registry_pos)
        np.testing.assert_array_equal(full["image"][registry_pos].numpy(), data[file_pos])
    np.testing.assert_array_equal(full["wavelengths"].numpy(), l2a.wavelengths)  # registry order
    sub = SensorRasterDataset(path, sensor="s2_l2a", bands=["B04", "B3", "B02"])
    sample = sub[window(2, 2, 8, 8)]
    for channel, band in enumerate(["B04", "B03", "B02"]):
        file_pos = order.index(l2a.band_names.index(band))
        np.testing.assert_array_equal(sample["image"][channel].numpy(), data[file_pos, 2:10, 2:10])
    np.testing.assert_array_equal(
        sample["wavelengths"].numpy(), l2a.select(["B04", "B03", "B02"]).wavelengths
    )
    assert canonical_band_name("B01") == canonical_band_name("b1") == "B1"
    assert canonical_band_name("B8A") == "B8A" and canonical_band_name("VV") == "VV"


def test_positional_bands_without_descriptions(tmp_path: Path) -> None:
    data = ramp(6, 8, 8, "int16")
    path = write_geotiff(tmp_path / "l8.tif", data, res=30)
    sample = SensorRasterDataset(path, sensor="landsat8_sr", bands=["B5", "B2"])[
        window(0, 0, 8, 8, res=30)
    ]
    np.testing.assert_array_equal(sample["image"].numpy(), data[[3, 0]])
    assert sample["gsd"] == pytest.approx(30.0)


def test_nodata_gives_valid_mask_and_zero(tmp_path: Path) -> None:
    data = ramp(13, 16, 16)
    data[4, 2:5, 3:7] = 0  # nodata in one band invalidates the pixel
    path = write_geotiff(tmp_path / "nd.tif", data, nodata=0)
    sample = SensorRasterDataset(path, sensor="s2")[window(0, 0, 16, 16)]
    expected = np.ones((16, 16), dtype=bool)
    expected[2:5, 3:7] = False
    np.testing.assert_array_equal(sample["valid"].numpy(), expected)
    assert float(sample["image"][:, 2:5, 3:7].abs().sum()) == 0.0
    np.testing.assert_array_equal(sample["image"][:, 0, :].numpy(), data[:, 0, :])
    # The override wins over the file's own nodata value.
    marked = SensorRasterDataset(path, sensor="s2", nodata=float(data[0, 10, 10]))
    valid = marked[window(0, 0, 16, 16)]["valid"].numpy()
    assert not valid[10, 10] and valid[2, 3] and valid.sum() == 255


def test_labels_become_int64_mask_with_nearest_resampling(tmp_path: Path) -> None:
    image = write_geotiff(tmp_path / "img" / "a.tif", ramp(13, 16, 16))
    labels = np.arange(64, dtype=np.uint8).reshape(8, 8) % 5
    labels[0, 0] = 255  # the label file's nodata: no label there
    label = write_geotiff(tmp_path / "lab" / "a.tif", labels[:, :6], res=20, nodata=255)
    ds = SensorRasterDataset(image, sensor="s2", label_paths=label)
    sample = ds[window(0, 0, 16, 16)]
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (16, 16)
    up = np.kron(labels[:, :6], np.ones((2, 2), dtype=np.int64))  # 12 px of the 16 wide
    up[:2, :2] = -1
    np.testing.assert_array_equal(sample["mask"][:, :12].numpy(), up)
    assert (sample["mask"][:, 12:] == -1).all()  # no label there: the ignore index


def test_sensor_described_from_wavelength_tags(tmp_path: Path) -> None:
    tags = [{"wavelength": "0.45", "wavelength_units": "Micrometers"}, {"wavelength": "860.5"}]
    path = write_geotiff(tmp_path / "hs.tif", smooth(2, 8, 8), band_tags=tags)
    sample = SensorRasterDataset(path)[window(0, 0, 8, 8)]
    np.testing.assert_allclose(sample["wavelengths"].numpy(), [450.0, 860.5])
    assert sample["sensor"] == "hs"


def test_random_and_grid_samplers_with_workers(tmp_path: Path) -> None:
    write_geotiff(tmp_path / "a.tif", ramp(13, 64, 64), tiled=True)
    write_geotiff(tmp_path / "b.tif", ramp(13, 64, 64), origin=(X0 + 640, Y0), tiled=True)
    ds = SensorRasterDataset(tmp_path, sensor="s2")
    random = RandomGeoSampler(ds, size=24, length=12, generator=torch.Generator().manual_seed(0))
    grid = GridGeoSampler(ds, size=32, stride=32)
    assert len(grid) == 8
    for sampler, n_batches in ((random, 3), (grid, 2)):
        loader = DataLoader(
            ds, sampler=sampler, batch_size=4, num_workers=2, collate_fn=collate_samples
        )
        batches = list(loader)
        assert len(batches) == n_batches
        size = 24 if sampler is random else 32
        for batch in batches:
            assert batch["image"].shape == (4, 13, size, size)
            assert batch["wavelengths"].shape == (4, 13) and batch["valid"].all()
            assert int(batch["n_skipped"]) == 0 and batch["gsd"].tolist() == [10.0] * 4
            assert float(batch["image"].min()) >= 1.0  # real pixels, not fill


def test_pickle_grid_setters_and_geographic_gsd(tmp_path: Path) -> None:
    data = ramp(13, 32, 32)
    ds = SensorRasterDataset(write_geotiff(tmp_path / "a.tif", data), sensor="s2")
    ds[window(0, 0, 8, 8)]  # opens a handle that must not travel in the pickle
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone[window(0, 0, 8, 8)]["image"].numpy(), data[:, :8, :8])
    ds.res = 20.0
    coarse = ds[window(0, 0, 8, 8, res=20)]
    assert coarse["image"].shape == (13, 8, 8) and coarse["gsd"] == pytest.approx(20.0)
    wgs84 = rasterio.crs.CRS.from_epsg(4326)
    assert gsd_metres(wgs84, (8.983e-05, 8.983e-05)) == pytest.approx(10.0, rel=1e-3)

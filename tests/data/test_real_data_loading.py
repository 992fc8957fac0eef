"""The data layer on real sensor samples from ../shared/data (skipped when absent)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torchgeo.samplers import RandomGeoSampler

from rsfm.data.errors import BandMismatchError, MissingCRSError
from rsfm.data.paired import CoRegisteredPairDataset
from rsfm.data.raster import SensorRasterDataset
from rsfm.sensors import Band, Sensor, get_sensor

DATA = Path(
    os.environ.get("RSFM_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data"
)
if not DATA.is_dir():
    pytest.skip(f"real sensor samples absent ({DATA})", allow_module_level=True)
pytestmark = pytest.mark.shared_data

FLOODS = DATA / "sen1floods11_spain"
BEN = DATA / "bigearthnet_s1s2"
BEN_PATCH = "S2A_MSIL2A_20170613T101031_87_48"


def whole(ds: SensorRasterDataset) -> dict:
    """The sample covering the dataset's full extent."""
    x, y, _ = ds.bounds
    return ds[x.start : x.stop, y.start : y.stop]


def read_file(path: Path) -> tuple[np.ndarray, rasterio.Affine, list]:
    with rasterio.open(path) as src:
        return src.read(), src.transform, list(src.descriptions)


def test_sen1floods11_s2_l1c_in_geographic_crs() -> None:
    path = FLOODS / "Spain_7370579_S2Hand.tif"
    labels = FLOODS / "Spain_7370579_LabelHand.tif"
    ds = SensorRasterDataset(path, sensor="sentinel2_l1c", label_paths=labels)
    sample = whole(ds)
    data, transform, descriptions = read_file(path)
    assert descriptions[0] == "B1" and ds.crs.to_epsg() == 4326
    assert sample["image"].shape == (13, 512, 512) and sample["transform"] == transform
    np.testing.assert_array_equal(
        sample["wavelengths"].numpy(), get_sensor("sentinel2_l1c").wavelengths
    )
    np.testing.assert_array_equal(sample["image"].numpy(), data.astype(np.float32))
    assert sample["gsd"] == pytest.approx(10.0, rel=1e-3) and bool(sample["valid"].all())
    label, _, _ = read_file(labels)
    np.testing.assert_array_equal(sample["mask"].numpy(), label[0].astype(np.int64))
    assert set(np.unique(sample["mask"].numpy())) == {-1, 0, 1}


def test_sen1floods11_s1_nan_nodata_masks(tmp_path: Path) -> None:
    copy = tmp_path / "Spain_7370579_S1Hand.tif"
    shutil.copy(FLOODS / copy.name, copy)
    with rasterio.open(copy, "r+") as dst:
        assert np.isnan(dst.nodata)
        data = dst.read()
        data[:, 100:110, 200:230] = np.nan  # a swath gap, as real S1 scenes have
        dst.write(data)
    sample = whole(SensorRasterDataset(copy, sensor="sentinel1_grd"))
    valid = sample["valid"].numpy()
    assert not valid[100:110, 200:230].any() and valid.sum() == 512 * 512 - 300
    assert float(sample["image"][:, 100:110, 200:230].abs().sum()) == 0.0
    finite = sample["image"][:, sample["valid"]]
    assert -60 < float(finite.min()) and float(finite.max()) < 40  # backscatter in dB
    assert sample["wavelengths"][0] > 0 > sample["wavelengths"][1]


def test_sen1floods11_s2_s1_pair() -> None:
    s2 = SensorRasterDataset(FLOODS / "Spain_7370579_S2Hand.tif", sensor="sentinel2_l1c")
    s1 = SensorRasterDataset(FLOODS / "Spain_7370579_S1Hand.tif", sensor="sentinel1_grd")
    pair = CoRegisteredPairDataset(s2, s1)
    query = next(iter(RandomGeoSampler(pair, size=64, length=1)))
    sample = pair[query]
    assert sample["image"].shape == (13, 64, 64) and sample["pair_image"].shape == (2, 64, 64)
    assert bool(sample["pair_valid"].all())


def test_bigearthnet_stacked_s2_and_s1_pairs() -> None:
    """Channels come in registry order (sentinel2_l2a), mapped by the file's band descriptions."""
    l2a = get_sensor("sentinel2_l2a")
    for s2_path in sorted((BEN / "stacked").glob("*_S2_12band_10m.tif")):
        s1_path = s2_path.with_name(s2_path.name.replace("S2_12band_10m", "S1_VV_VH"))
        s2 = SensorRasterDataset(s2_path, sensor="sentinel2_l2a")
        pair = CoRegisteredPairDataset(s2, SensorRasterDataset(s1_path, sensor="sentinel1_grd"))
        sample = whole(pair)
        data, transform, descriptions = read_file(s2_path)
        s1_data, _, _ = read_file(s1_path)
        assert sample["image"].shape == (12, 120, 120) and sample["transform"] == transform
        np.testing.assert_array_equal(sample["wavelengths"].numpy(), l2a.wavelengths)
        for channel, band in enumerate(l2a.band_names):
            file_band = descriptions.index(band)
            np.testing.assert_array_equal(sample["image"][channel].numpy(), data[file_band])
        np.testing.assert_array_equal(sample["pair_image"].numpy(), s1_data)
        assert sample["pair_sensor"] == "sentinel1_grd" and bool(sample["pair_valid"].all())
    # All four patches (three UTM zones) in one dataset: the others are warped on the fly.
    s2_files = sorted((BEN / "stacked").glob("*_S2_12band_10m.tif"))
    mixed = SensorRasterDataset(s2_files, sensor="sentinel2_l2a", bands=["B04"])
    mixed_paths = mixed.files
    assert len(mixed) == 4 and all("S2_12band" in p for p in mixed_paths)
    generator = torch.Generator().manual_seed(0)
    for query in RandomGeoSampler(mixed, size=32, length=8, generator=generator):
        sample = mixed[query]
        assert sample["image"].shape == (1, 32, 32) and float(sample["image"].max()) > 0


def test_bigearthnet_original_band_files_match_stacked() -> None:
    original = SensorRasterDataset(BEN / "original", sensor="sentinel2_l2a", band_files=True)
    assert len(original) == 1 and original.res == (10.0, 10.0)  # the S1 folder is not S2
    sample = whole(original)
    stacked, transform, descriptions = read_file(BEN / "stacked" / f"{BEN_PATCH}_S2_12band_10m.tif")
    assert sample["image"].shape == (12, 120, 120) and sample["transform"] == transform
    for channel, band in enumerate(original.sensor.band_names):
        ours = sample["image"][channel].numpy().ravel()
        theirs = stacked[descriptions.index(band)].ravel().astype(np.float32)
        assert np.corrcoef(ours, theirs)[0, 1] > 0.9, band
    s1 = SensorRasterDataset(BEN / "original", sensor="sentinel1_grd", band_files=True)
    pair = whole(CoRegisteredPairDataset(original, s1))
    s1_stacked, _, _ = read_file(BEN / "stacked" / f"{BEN_PATCH}_S1_VV_VH.tif")
    np.testing.assert_array_equal(pair["pair_image"].numpy(), s1_stacked)


def test_landsat8_surface_reflectance_nodata(tmp_path: Path) -> None:
    copy = tmp_path / "LC08_232066_20190727.tif"
    shutil.copy(DATA / "landsat8" / copy.name, copy)
    with rasterio.open(copy, "r+") as dst:
        assert dst.nodata == -9999
        data = dst.read()
        data[2, :20, :30] = -9999  # a fill block in one band
        dst.write(data)
    sample = whole(SensorRasterDataset(copy, sensor="landsat8_sr"))
    assert sample["image"].shape == (6, 235, 318) and sample["gsd"] == 30.0
    np.testing.assert_array_equal(
        sample["wavelengths"].numpy(), get_sensor("landsat8_sr").wavelengths
    )
    assert not sample["valid"][:20, :30].any() and int((~sample["valid"]).sum()) == 600
    np.testing.assert_array_equal(sample["image"][:, 30:, 30:].numpy(), data[:, 30:, 30:])


def test_naip_rgbn() -> None:
    path = DATA / "naip_opengeos" / "m_4709963_se_14_1_20200831.tif"
    ds = SensorRasterDataset(path, sensor="naip")
    data, transform, _ = read_file(path)
    x, y, _ = ds.bounds
    sample = ds[x.start : x.start + 640, y.stop - 320 : y.stop]  # 128 x 64 px at 5 m
    assert sample["image"].shape == (4, 64, 128) and sample["gsd"] == 5.0
    np.testing.assert_array_equal(sample["image"].numpy(), data[:, :64, :128])
    np.testing.assert_array_equal(sample["wavelengths"].numpy(), get_sensor("naip").wavelengths)


def test_enmap_wavelengths_from_file_tags() -> None:
    folder = DATA / "enmap_potsdam"
    ds = SensorRasterDataset(
        folder / "enmap_potsdam_tile_128_0_image.tif",
        label_paths=folder / "enmap_potsdam_tile_128_0_label.tif",
    )
    sample = whole(ds)
    waves = sample["wavelengths"].numpy()
    assert waves.shape == (224,) and sample["image"].shape == (224, 32, 32)
    assert waves[0] == pytest.approx(418.24) and waves[-1] == pytest.approx(2445.53)
    assert np.all(np.diff(waves[:91]) > 0) and sample["gsd"] == 30.0
    # Bands 130-135 are flagged bad (bbl=0) and filled with nodata: they do not void pixels.
    assert bool(sample["valid"].all()) and float(sample["image"][129:135].abs().max()) == 0.0
    assert set(np.unique(sample["mask"].numpy())) <= {0, 1, 2, 3, 4, 5}


def test_neon_hyperspectral_needs_crs_and_wavelengths() -> None:
    folder = DATA / "neon_harv_hsi_rgb"
    no_crs = folder / "2019_HARV_6_726000_4699000_image_crop_hyperspectral_2019.tif"
    with pytest.raises(MissingCRSError, match="image_crop_hyperspectral_2019.tif"):
        SensorRasterDataset(no_crs, sensor="neon_aop")
    with_crs = no_crs.with_name(no_crs.stem + "_crs32618.tif")
    with pytest.raises(BandMismatchError, match="crs32618.tif.*no wavelength metadata"):
        SensorRasterDataset(with_crs)
    with pytest.raises(BandMismatchError, match="crs32618.tif.*369 bands.*426"):
        SensorRasterDataset(with_crs, sensor="neon_aop")
    centres = np.linspace(383.0, 2512.0, 369)
    bands = tuple(Band(f"B{i:03d}", float(c), 5.0, 1.0) for i, c in enumerate(centres, 1))
    neon = Sensor("neon_harv", "hyperspectral", bands)
    sample = whole(SensorRasterDataset(with_crs, sensor=neon))
    data, _, _ = read_file(with_crs)
    assert sample["image"].shape == (369, 27, 10) and sample["sensor"] == "neon_harv"
    np.testing.assert_allclose(sample["wavelengths"].numpy(), centres.astype(np.float32))
    valid = sample["valid"].numpy()
    expected_valid = ~(data == np.float32(-3.3999999521443642e38)).any(axis=0)
    np.testing.assert_array_equal(valid, expected_valid)
    np.testing.assert_array_equal(sample["image"].numpy()[:, valid], data[:, valid])

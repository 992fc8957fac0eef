"""Sensor registry: real band tables, SAR convention, band metadata from GeoTIFF tags."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from rsfm.sensors import (
    Sensor,
    bad_band_mask,
    get_sensor,
    list_sensors,
    radar_wavelength_nm,
    sensor_from_raster,
)


def test_sentinel2_l1c_has_13_bands_with_esa_centres() -> None:
    s2 = get_sensor("sentinel2_l1c")
    assert s2.band_names == [
        "B01",
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B08",
        "B8A",
        "B09",
        "B10",
        "B11",
        "B12",
    ]
    centres = dict(zip(s2.band_names, s2.wavelengths.tolist(), strict=True))
    assert centres["B8A"] == pytest.approx(864.7)
    assert centres["B10"] == pytest.approx(1373.5)
    assert [b.gsd_m for b in s2.bands if b.name in {"B02", "B03", "B04", "B08"}] == [10.0] * 4
    assert get_sensor("S2") is s2  # alias, case-insensitive
    assert "B10" not in get_sensor("sentinel2_l2a").band_names


def test_sar_convention_signs_polarisation() -> None:
    s1 = get_sensor("sentinel1_grd")
    vv, vh = s1.wavelengths.tolist()
    assert vv == pytest.approx(299_792_458 / 5.405e9 * 1e9, rel=1e-6)  # C-band, ~5.55 cm
    assert vh == pytest.approx(-vv)
    assert all(b.is_sar for b in s1.bands)
    with pytest.raises(ValueError, match="polarisation"):
        radar_wavelength_nm(5.405, "XX")


def test_other_registered_sensors() -> None:
    names = list_sensors()
    for required in ("landsat8_oli_tirs", "landsat8_sr", "naip", "rgb", "enmap", "emit"):
        assert required in names
    l8 = get_sensor("landsat8")
    assert len(l8) == 11 and l8.wavelengths[-1] == pytest.approx(12005.0)
    assert len(get_sensor("enmap")) == 224
    assert len(get_sensor("emit")) == 285
    with pytest.raises(KeyError, match="known sensors"):
        get_sensor("sentinel7")


def test_select_and_dict_round_trip() -> None:
    s2 = get_sensor("sentinel2_l1c")
    rgb = s2.select(["B04", "B03", "B02"])
    assert rgb.wavelengths.tolist() == pytest.approx([664.6, 559.8, 492.4])
    assert Sensor.from_dict(rgb.to_dict()).wavelengths.tolist() == rgb.wavelengths.tolist()
    with pytest.raises(KeyError, match="B13"):
        s2.select(["B13"])


def test_sensor_from_raster_reads_wavelength_tags(tmp_path) -> None:
    path = tmp_path / "hsi.tif"
    profile = dict(
        driver="GTiff",
        width=4,
        height=4,
        count=3,
        dtype="float32",
        crs="EPSG:32633",
        transform=from_origin(500000, 5800000, 30, 30),
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.zeros((3, 4, 4), dtype="float32"))
        for i, (wl, fwhm, bbl) in enumerate([(0.45, 0.01, 1), (0.55, 0.01, 0), (1.6, 0.02, 1)], 1):
            ds.update_tags(
                i, wavelength=str(wl), fwhm=str(fwhm), wavelength_units="Micrometers", bbl=str(bbl)
            )
    sensor = sensor_from_raster(path)
    assert sensor.wavelengths.tolist() == pytest.approx([450.0, 550.0, 1600.0])
    assert sensor.fwhms.tolist() == pytest.approx([10.0, 10.0, 20.0])
    assert sensor.gsd == 30.0
    assert bad_band_mask(path).tolist() == [True, False, True]

    bare = tmp_path / "bare.tif"
    with rasterio.open(bare, "w", **profile) as ds:
        ds.write(np.zeros((3, 4, 4), dtype="float32"))
    with pytest.raises(ValueError, match="bare.tif: band 1 has no wavelength"):
        sensor_from_raster(bare)


def test_enmap_file_tags(shared_data) -> None:
    path = shared_data / "enmap_potsdam" / "enmap_potsdam_tile_128_0_image.tif"
    sensor = sensor_from_raster(path, name="enmap")
    assert len(sensor) == 224
    assert sensor.wavelengths[0] == pytest.approx(418.24)
    assert sensor.wavelengths[-1] == pytest.approx(2445.53)
    assert sensor.modality == "hyperspectral"
    assert 0 < int((~bad_band_mask(path)).sum()) < 224  # water-absorption bands flagged

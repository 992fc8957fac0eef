"""One band rule for selection and normalisation: spectral ranges for spectrum-aware models,
passbands (FWHM) for fixed-band ones, input statistics where the card has none; band subsets
and custom wavelengths from the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasters import unit_stats, write_geotiff

import rsfm.hub as hub
from rsfm.band_stats import BandStats
from rsfm.cli import main
from rsfm.data.errors import BandMismatchError
from rsfm.hub.card import ModelCard, StageCard, sensor_bands
from rsfm.inference.bands import (
    input_sensor,
    match_bands,
    parse_band_subset,
    parse_wavelengths,
)
from rsfm.models.registry import create_model
from rsfm.sensors import get_sensor


def _distinct_stats(sensor: str) -> BandStats:
    """Statistics whose rows differ, so a test sees which row each band got."""
    bands = get_sensor(sensor).bands
    n = len(bands)
    return BandStats(
        band_names=[b.name for b in bands],
        wavelengths=[float(b.center_nm) for b in bands],
        low=[float(i) for i in range(n)],
        high=[float(i + 100) for i in range(n)],
        mean=[float(i + 50) for i in range(n)],
        std=[float(i + 10) for i in range(n)],
        sensor=sensor,
    )


def _card(*sensors: str, stats: dict[str, BandStats] | None = None) -> ModelCard:
    tables = {s: sensor_bands(s) for s in sensors}
    return ModelCard(
        task="segmentation",
        sensors=tables,
        stages=[StageCard("pretraining", tables)],
        normalization=stats if stats is not None else {s: unit_stats(s) for s in sensors},
    )


@pytest.fixture(scope="module")
def spectral_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("smarties_tiny_seg_linear", num_outputs=3)


def _raster(path: Path, count: int, seed: int = 0, scale: float = 1.0, **kwargs) -> Path:
    pixels = np.random.default_rng(seed).random((count, 32, 32), dtype=np.float32) * scale
    return write_geotiff(path, pixels, **kwargs)


# ----------------------------------------------------------------------------- spectral ranges
def test_an_rgb_camera_is_taken_by_a_model_trained_on_sentinel2_and_naip(
    tmp_path: Path, spectral_model: torch.nn.Module
) -> None:
    stats = {"sentinel2_l1c": _distinct_stats("sentinel2_l1c"), "naip": _distinct_stats("naip")}
    card = _card("sentinel2_l1c", "naip", stats=stats)
    camera = _raster(tmp_path / "rgb.tif", 3)
    selection = match_bands(camera, get_sensor("rgb"), card, False, model=spectral_model)
    assert selection.bands == [1, 2, 3]
    np.testing.assert_allclose(selection.wavelengths, [640.0, 545.0, 470.0])
    # 640/545/470 nm lie in NAIP's R/G/B passbands (635+-16, 555+-30, 465+-30): NAIP's rows,
    # keyed by the camera's own wavelengths so normalisation finds each one exactly.
    naip = stats["naip"]
    assert selection.stats.sensor == "naip"
    assert selection.stats.mean == [naip.mean[0], naip.mean[1], naip.mean[2]]
    assert selection.stats.wavelengths == [640.0, 545.0, 470.0]
    image = torch.full((3, 4, 4), 60.0)
    out = selection.stats.normalize(image, torch.as_tensor(selection.wavelengths))
    np.testing.assert_allclose(out[:, 0, 0], [(60 - 50) / 10, (60 - 51) / 11, (60 - 52) / 12])
    # NAIP's NIR is missing: said, not refused; --allow-missing-bands silences it.
    assert any("lacks 1 band" in n and "845" in n for n in selection.notices)
    quiet = match_bands(camera, get_sensor("rgb"), card, True, model=spectral_model)
    assert quiet.notices == [] and quiet.bands == [1, 2, 3]


def test_bands_in_ranges_the_model_never_saw_are_dropped(
    tmp_path: Path, spectral_model: torch.nn.Module
) -> None:
    card = _card("naip")
    s2 = _raster(tmp_path / "s2.tif", 13)
    selection = match_bands(s2, get_sensor("sentinel2_l1c"), card, True, model=spectral_model)
    names = [get_sensor("sentinel2_l1c").bands[b - 1].name for b in selection.bands]
    # NAIP trained the blue, green, red and NIR-broad ranges: B02, B03, B04 and B08 only.
    assert names == ["B02", "B03", "B04", "B08"]
    sar = _raster(tmp_path / "s1.tif", 2)
    with pytest.raises(BandMismatchError, match="s1.tif: none of its bands"):
        match_bands(sar, get_sensor("sentinel1_grd"), card, True, model=spectral_model)


def test_bands_without_card_statistics_get_the_inputs_own(
    tmp_path: Path, spectral_model: torch.nn.Module
) -> None:
    card = _card("sentinel2_l1c", stats={"sentinel2_l1c": _distinct_stats("sentinel2_l1c")})
    pan = _raster(tmp_path / "pan.tif", 1, scale=2000.0)
    sensor = input_sensor(pan, None, card, wavelengths="450-800")
    assert sensor.bands[0].center_nm == 625.0 and sensor.bands[0].fwhm_nm == 350.0
    selection = match_bands(pan, sensor, card, True, model=spectral_model)
    assert selection.bands == [1] and selection.stats.sensor == "input"
    with rasterio.open(pan) as src:
        values = src.read(1).astype(np.float64).ravel()
    low, high = np.percentile(values, [1, 99])
    assert selection.stats.low[0] == pytest.approx(low)
    assert selection.stats.high[0] == pytest.approx(high)
    assert selection.stats.mean[0] == pytest.approx(np.clip(values, low, high).mean())
    assert any("input's own statistics" in n for n in selection.notices)


def test_a_wavelength_grid_model_takes_enmap_after_training_on_aviris(tmp_path: Path) -> None:
    model = create_model("hyperseg_tiny", num_outputs=2)
    card = _card("aviris_indian_pines")
    enmap = get_sensor("enmap")
    cube = _raster(tmp_path / "enmap.tif", len(enmap))
    selection = match_bands(cube, enmap, card, True, model=model)
    aviris = get_sensor("aviris_indian_pines").wavelengths.astype(float)
    # Every EnMAP band within two grid steps (10 nm) of an AVIRIS training band is taken.
    expected = [i + 1 for i, w in enumerate(enmap.wavelengths) if np.abs(aviris - w).min() <= 10]
    assert selection.bands == expected and len(expected) > 200
    assert len(expected) < len(enmap)  # the water-absorption gaps AVIRIS was trained without
    with pytest.raises(BandMismatchError, match="none of its bands"):  # 1 nm rule: refused
        match_bands(cube, enmap, _card("sentinel1_grd"), True, model=model)


# ----------------------------------------------------------------------------- fixed bands
def test_a_fixed_band_model_matches_within_the_passband(tmp_path: Path) -> None:
    card = _card("naip", stats={"naip": _distinct_stats("naip")})
    wv2 = _raster(tmp_path / "wv2.tif", 4)
    # WorldView-2 blue 477.9 / green 546.2 / NIR1 831.3 lie in NAIP's B / G / N passbands,
    # red 658.8 is outside NAIP R (635 +- 16): a fixed-band model cannot run without it.
    with pytest.raises(BandMismatchError, match="lacks bands the model was trained with at"):
        match_bands(wv2, get_sensor("worldview2_ms4"), card, True, model=None)
    naip = _raster(tmp_path / "naip.tif", 4)
    selection = match_bands(naip, get_sensor("naip"), card, False, model=None)
    assert selection.bands == [1, 2, 3, 4] and selection.notices == []
    assert selection.stats.mean == _distinct_stats("naip").mean


# ----------------------------------------------------------------------------- command line
def test_band_subsets_by_index_range_and_description(tmp_path: Path) -> None:
    path = _raster(tmp_path / "s1.tif", 3, descriptions=["VV", "VH", "VV/VH"])
    assert parse_band_subset(path, "1,2") == [1, 2]
    assert parse_band_subset(path, "1-2") == [1, 2]
    assert parse_band_subset(path, "vh,VV") == [2, 1]
    assert parse_band_subset(path, None) is None
    with pytest.raises(BandMismatchError, match=r"s1.tif: --bands '4': the file has bands 1..3"):
        parse_band_subset(path, "4")
    with pytest.raises(BandMismatchError, match="no such band .*VV, VH, VV/VH"):
        parse_band_subset(path, "HH")
    sensor = input_sensor(path, "sentinel1_grd", None, subset=[1, 2])
    assert sensor.band_names == ["VV", "VH"]
    with pytest.raises(BandMismatchError, match="pick bands with --bands"):
        input_sensor(path, "sentinel1_grd", None)
    with pytest.raises(BandMismatchError, match="not a centre"):
        parse_wavelengths("800-450")


def test_tile_cli_takes_a_three_band_sentinel1_product_and_a_pan_band(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = create_model("smarties_tiny_seg_linear", num_outputs=2)
    card = {
        "task": "segmentation",
        "class_names": ["land", "water"],
        "normalization": {s: unit_stats(s) for s in ("sentinel1_grd", "sentinel2_l1c")},
    }
    hub.push(model, "seg", "1.0", tmp_path / "hub", card=card)
    common = ["--hub", str(tmp_path / "hub"), "--tile-size", "32"]
    s1 = _raster(tmp_path / "s1.tif", 3, descriptions=["VV", "VH", "VV/VH"])
    out = tmp_path / "s1_map.tif"
    argv = ["tile", "seg@1.0", str(s1), str(out), *common, "--sensor", "sentinel1_grd"]
    with pytest.raises(BandMismatchError, match="3 bands, but sensor 'sentinel1_grd' has 2"):
        main(argv)
    assert main([*argv, "--bands", "VV,VH"]) == 0
    with rasterio.open(out) as src:
        assert src.read(1).max() <= 1 and src.crs is not None
    pan = _raster(tmp_path / "pan.tif", 1, res=0.5)
    for flags in (["--wavelengths", "450-800"], ["--sensor", "pan"]):
        target = tmp_path / f"pan_{flags[1]}.tif"
        assert main(["tile", "seg@1.0", str(pan), str(target), *common, *flags]) == 0
        assert target.exists()
    strict = ["tile", "seg@1.0", str(pan), str(tmp_path / "x.tif"), *common, "--strict"]
    assert main([*strict, "--sensor", "pan"]) == 2  # input statistics used: refused if strict

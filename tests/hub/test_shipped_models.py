"""Every model shipped in checkpoints/ keeps the hub contract and maps a real raster.

Contract: the card names the sensors each training stage saw and, for class outputs, the class
names; real-data models say so (a stage fed from the datasets catalogue). Generic path: pull
into another hub -> load -> tile a real raster of a sensor the model was trained on -> the output
has the input's CRS and transform (rasterio) and the card's class names in its tags and legend.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from rsfm.cli import main
from rsfm.hub import load_card
from rsfm.sensors import get_sensor

REPO = Path(__file__).resolve().parents[2]
HUB = REPO / "checkpoints"
ENTRIES = sorted(json.loads((HUB / "index.json").read_text())["entries"])
#: Catalogue datasets whose test split feeds the tiling check, per sensor a model names.
RASTER_SOURCES = {
    "sentinel2_l1c": "sen1floods11",
    "sentinel2_l2a": "bigearthnet_stacked",
    "naip": "naip",
    "landsat8_l1_rgbn": "cloud38",
    "aviris_indian_pines": "indian_pines",
}


@pytest.mark.parametrize("entry", ENTRIES)
def test_card_names_training_sensors_and_classes(entry: str) -> None:
    card = load_card(entry, HUB)
    assert card.sensors and set(card.normalization) >= set(card.sensors), entry
    if card.schema_version < 2:  # the synthetic-world default predates training stages
        assert entry == "smarties-tiny@1.0.0"
        return
    assert card.stages and all(stage.sensors for stage in card.stages), entry
    assert set(card.normalization) >= set(card.stages[-1].sensors), entry
    if card.output == "classes":
        assert card.class_names and len(set(card.class_names)) == len(card.class_names)
    names = [d["name"] for stage in card.stages for d in stage.datasets]
    assert any(n.startswith("rsfm-catalogue:") for n in names), (entry, names)  # real data


def _write_geotiff(sample: dict, path: Path) -> Path:
    """One catalogue chip as a GeoTIFF with band descriptions and wavelength tags."""
    image = sample["image"].numpy()
    sensor = get_sensor(sample["sensor"])
    crs = sample.get("crs") or CRS.from_epsg(32633)
    transform = sample.get("transform") or from_origin(
        500_000, 4_500_000, sample["gsd"], sample["gsd"]
    )
    profile = dict(
        driver="GTiff", width=image.shape[2], height=image.shape[1], count=image.shape[0],
        dtype="float32", crs=crs, transform=transform,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image.astype(np.float32))
        dst.descriptions = tuple(sensor.band_names)
        for i, band in enumerate(sensor.bands, start=1):
            dst.update_tags(i, wavelength=band.center_nm, fwhm=band.fwhm_nm)
    return path


@pytest.mark.shared_data
@pytest.mark.parametrize("entry", [e for e in ENTRIES if not e.startswith("smarties-tiny")])
def test_shipped_segmenter_maps_a_real_raster(
    entry: str, shared_data: Path, tmp_path: Path
) -> None:
    from rsfm.data.catalogue import load_dataset

    card = load_card(entry, HUB)
    sensor = next(s for s in card.stages[-1].sensors if s in RASTER_SOURCES)
    sample = load_dataset(RASTER_SOURCES[sensor], "test", shared_data).samples[0]
    assert sample["sensor"] == sensor
    source = _write_geotiff(sample, tmp_path / "input.tif")
    assert main(["hub", "pull", entry, "--from", str(HUB), "--hub", str(tmp_path / "hub")]) == 0
    out, plot = tmp_path / "map.tif", tmp_path / "map.png"
    code = main(
        [
            "tile",
            entry,
            str(source),
            str(out),
            "--hub",
            str(tmp_path / "hub"),
            "--plot",
            str(plot),
            "--device",
            "cpu",
        ]
    )
    assert code == 0 and plot.stat().st_size > 0
    with rasterio.open(source) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform
        assert (dst.width, dst.height) == (src.width, src.height)
        assert json.loads(dst.tags()["CLASS_NAMES"]) == list(card.class_names)
        classes = dst.read(1)
    assert set(np.unique(classes)) <= set(range(len(card.class_names)))

"""Time-series datasets: eo-learn's Sentinel-2 NDVI EOPatch with its land-use mask.

``eolearn_ndvi``: one 101x100 px EOPatch (10 m, EPSG:32633, Slovenia) with 68 Sentinel-2 NDVI
dates (2015-07 .. 2017-12), a cloud mask per date and a land-use / land-cover (LULC) raster. A
sample carries the whole time series as ``time_series`` [T,H,W] and, so that the sample contract
holds, the median of the cloud-free dates as ``image`` [1,H,W] (sensor ``sentinel2_ndvi``).
"""

from __future__ import annotations

import json
import re
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rasterio.crs import CRS
from rasterio.transform import from_bounds
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from rsfm.data.catalogue.base import DatasetInfo, check_split, chip_sample, region_split, require
from rsfm.data.catalogue.registry import register_dataset
from rsfm.sensors import Band, Sensor, get_sensor, register_sensor

_S2 = get_sensor("sentinel2_l2a")
_RED, _NIR = (next(b for b in _S2.bands if b.name == n) for n in ("B04", "B08"))

#: NDVI = (B08 - B04) / (B08 + B04) of Sentinel-2. A derived index has no wavelength of its own;
#: by convention it carries the midpoint of the red and NIR bands it is made of (748.7 nm) and
#: their span as its width, so wavelength-conditioned models see one stable, finite value.
SENTINEL2_NDVI: Sensor = register_sensor(
    Sensor(
        "sentinel2_ndvi",
        "optical",
        (
            Band(
                "NDVI",
                round((_RED.center_nm + _NIR.center_nm) / 2, 2),
                round(_NIR.center_nm - _RED.center_nm, 2),
                10.0,
            ),
        ),
        "Sentinel-2 NDVI (B08, B04), one derived band; wavelength = red/NIR midpoint",
    )
)

#: eo-learn's land-use classes (example_data/lulc_classes.py): file value v -> class id v - 1;
#: file value 0 ("no data") -> -1 (unlabelled).
LULC_CLASSES = (
    "cultivated land",
    "forest",
    "grassland",
    "shrubland",
    "water",
    "wetlands",
    "tundra",
    "artificial surface",
    "bareland",
    "snow and ice",
)
_CLASS_ENTRY = re.compile(r"""['"]([^'"]+)['"]\s*:\s*(\d+)""")

PATCH = "TestEOPatch"


def check_lulc_classes(path: Path) -> None:
    """Check ``lulc_classes.py`` (read as text, never imported) against :data:`LULC_CLASSES`.

    An empty file (as the shared copy is) is accepted: the table then comes from eo-learn.

    Raises:
        ValueError: The file names other classes or ids.
    """
    entries = {name.lower(): int(v) for name, v in _CLASS_ENTRY.findall(path.read_text())}
    if not entries:
        return
    expected = {"no data": 0, **{name: i + 1 for i, name in enumerate(LULC_CLASSES)}}
    if entries != expected:
        raise ValueError(f"{path}: classes {entries} differ from the catalogue's {expected}")


def read_bbox(path: Path) -> tuple[CRS, tuple[float, float, float, float]]:
    """CRS and (west, south, east, north) of an EOPatch's ``bbox.geojson`` polygon."""
    geo = json.loads(path.read_text())
    crs_name = geo.get("crs", {}).get("properties", {}).get("name", "")
    match = re.search(r"EPSG:+(\d+)", crs_name)
    if match is None:
        raise ValueError(f"{path}: no EPSG code in crs {crs_name!r}")
    coords = np.asarray(geo["coordinates"][0], dtype=np.float64)
    west, south = coords.min(axis=0)
    east, north = coords.max(axis=0)
    return CRS.from_epsg(int(match.group(1))), (west, south, east, north)


def _npy(patch: Path, relative: str) -> np.ndarray:
    array = np.load(require(patch / relative, "eolearn_ndvi"))
    return array[..., 0] if array.shape[-1] == 1 else array


def read_eopatch(folder: Path) -> dict[str, Any]:
    """The EOPatch's arrays (time first), dates, CRS and transform.

    Raises:
        DatasetNotFoundError: A file is missing.
        ValueError: The arrays disagree in shape or with the dates.
    """
    patch = require(folder / PATCH, "eolearn_ndvi")
    classes = folder / "lulc_classes.py"
    if classes.is_file():
        check_lulc_classes(classes)
    ndvi = _npy(patch, "data/NDVI.npy").astype(np.float32)
    is_data = _npy(patch, "mask/IS_DATA.npy").astype(bool)
    cloud = _npy(patch, "mask/CLM.npy").astype(bool)
    lulc = _npy(patch, "mask_timeless/LULC.npy").astype(np.int64)
    dem = _npy(patch, "data_timeless/DEM.npy").astype(np.float32)
    stamps = json.loads(require(patch / "timestamps.json", "eolearn_ndvi").read_text())
    dates = [datetime.fromisoformat(s).isoformat() for s in stamps]
    if ndvi.shape != is_data.shape or ndvi.shape != cloud.shape or len(dates) != len(ndvi):
        raise ValueError(
            f"{patch}: NDVI {ndvi.shape}, IS_DATA {is_data.shape}, CLM {cloud.shape} and "
            f"{len(dates)} dates disagree"
        )
    if lulc.shape != ndvi.shape[1:] or dem.shape != ndvi.shape[1:]:
        raise ValueError(f"{patch}: LULC {lulc.shape} / DEM {dem.shape} vs NDVI {ndvi.shape}")
    if lulc.min() < 0 or lulc.max() > len(LULC_CLASSES):
        raise ValueError(f"{patch}: LULC values {np.unique(lulc)} outside 0..{len(LULC_CLASSES)}")
    crs, (west, south, east, north) = read_bbox(require(patch / "bbox.geojson", "eolearn_ndvi"))
    height, width = lulc.shape
    return {
        "ndvi": ndvi,
        "clear": is_data & ~cloud,
        "lulc": lulc,
        "dem": dem,
        "dates": dates,
        "crs": crs,
        "transform": from_bounds(west, south, east, north, width, height),
    }


@register_dataset(
    DatasetInfo(
        name="eolearn_ndvi",
        title="eo-learn TestEOPatch: Sentinel-2 NDVI, 68 dates 2015-2017, land-use mask",
        folder="eolearn_ndvi_timeseries",
        task="timeseries",
        sensors=(SENTINEL2_NDVI.name,),
        class_names=LULC_CLASSES,
        split=(
            "One patch, split spatially (region_split): west half north 75% train, west half "
            "south 25% val, east half test; one sample per split covering its whole region "
            "(no overlapping chips, so each pixel is scored once)."
        ),
        licence="MIT (eo-learn)",
        source="sentinel-hub/eo-learn @ 303e7585 : example_data/TestEOPatch",
    )
)
def load_eolearn_ndvi(folder: Path, split: str) -> list[dict[str, Any]]:
    """The ``split`` region of the EOPatch as one sample.

    Keys beyond the contract: ``time_series`` [T,H,W] NDVI, ``clear`` [T,H,W] bool (data and
    not cloud), ``dates`` (ISO strings), ``dem`` [H,W] (m), ``window`` (row0, row1, col0, col1).
    ``image`` is the per-pixel median NDVI over the clear dates; a pixel with no clear date is
    invalid (zero in ``image`` and ``time_series``, -1 in ``mask``).
    """
    check_split(split)
    eop = read_eopatch(folder)
    height, width = eop["lulc"].shape
    region = region_split(height, width, split)
    rows, cols = slice(region.row0, region.row1), slice(region.col0, region.col1)
    ndvi, clear = eop["ndvi"][:, rows, cols], eop["clear"][:, rows, cols]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-cloudy pixel: NaN -> invalid
        median = np.nanmedian(np.where(clear, ndvi, np.nan), axis=0)
    lulc = eop["lulc"][rows, cols]
    window = Window(region.col0, region.row0, region.col1 - region.col0, region.row1 - region.row0)
    sample = chip_sample(
        median[None],
        SENTINEL2_NDVI,
        sample_id=f"{PATCH}_r{region.row0}_c{region.col0}",
        valid=np.isfinite(ndvi).all(axis=0),
        mask=np.where(lulc > 0, lulc - 1, -1),
        crs=eop["crs"],
        transform=window_transform(window, eop["transform"]),
        dates=list(eop["dates"]),
        dem=torch.from_numpy(np.ascontiguousarray(eop["dem"][rows, cols])),
        window=(region.row0, region.row1, region.col0, region.col1),
    )
    ok = sample["valid"].numpy()
    series = np.where(ok[None], ndvi, 0.0).astype(np.float32)
    sample["time_series"] = torch.from_numpy(np.ascontiguousarray(series))
    sample["clear"] = torch.from_numpy(np.ascontiguousarray(clear & ok[None]))
    return [sample]

"""Tiny GeoTIFFs with a real UTM CRS and known values, written into a test's tmp_path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from rsfm.band_stats import BandStats
from rsfm.sensors import get_sensor

UTM33N = "EPSG:32633"
UTM32N = "EPSG:32632"
ORIGIN = (500_000.0, 5_000_000.0)  # (west, north) in UTM 33N


def write_geotiff(
    path: Path,
    data: np.ndarray,
    *,
    crs: str | None = UTM33N,
    res: float = 10.0,
    origin: tuple[float, float] = ORIGIN,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    band_tags: Sequence[dict[str, str]] | None = None,
    tiled: bool = False,
) -> Path:
    """Write ``data`` [C,H,W] (or [H,W]) as a GeoTIFF north-up at ``res`` from ``origin``."""
    data = data[None] if data.ndim == 2 else data
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": data.dtype,
        "transform": from_origin(origin[0], origin[1], res, res),
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16, compress="deflate")
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if descriptions is not None:
            dst.descriptions = tuple(descriptions)
        for i, tags in enumerate(band_tags or [], start=1):
            dst.update_tags(i, **tags)
    return path


def ramp(bands: int, height: int, width: int, dtype: str = "uint16") -> np.ndarray:
    """Unique known values: pixel (b, r, c) holds 1 + b*H*W + r*W + c."""
    return (1 + np.arange(bands * height * width).reshape(bands, height, width)).astype(dtype)


def smooth(bands: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth float32 fields (sums of low-frequency sines), so resampling keeps correlation."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    out = np.empty((bands, height, width), dtype=np.float32)
    for b in range(bands):
        fx, fy, phase = rng.uniform(1, 3), rng.uniform(1, 3), rng.uniform(0, 6)
        out[b] = 1000 + 300 * np.sin(2 * np.pi * fx * x + phase) * np.cos(2 * np.pi * fy * y)
    return out


def unit_stats(sensor: str) -> BandStats:
    """Statistics of a registered sensor with every band in [0, 1] (mean 0.5, std 0.25)."""
    bands = get_sensor(sensor).bands
    n = len(bands)
    return BandStats(
        band_names=[b.name for b in bands],
        wavelengths=[float(b.center_nm) for b in bands],
        low=[0.0] * n,
        high=[1.0] * n,
        mean=[0.5] * n,
        std=[0.25] * n,
        sensor=sensor,
    )

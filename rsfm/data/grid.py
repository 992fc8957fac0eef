"""Grid helpers of the data layer: file discovery, band-name matching, GSD, window planning."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

PathLike = str | os.PathLike[str]
WGS84_SEMI_MAJOR_M = 6_378_137.0
_BAND_NAME = re.compile(r"^B(?:AND)?[ _]?0*(\d+)([A-Z]?)$")
_ALIGN_TOL_PX = 1e-3  # sub-pixel offset below which a window counts as grid-aligned


def canonical_band_name(name: str) -> str:
    """Normalise a band name so ``B1``, ``B01`` and ``band_1`` compare equal (``B8A`` kept)."""
    upper = name.strip().upper()
    match = _BAND_NAME.match(upper)
    return f"B{int(match[1])}{match[2]}" if match else upper


def find_rasters(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Expand files and directories (searched recursively) into sorted ``*.tif``/``*.tiff`` files.

    Hand-written rather than ``GeoDataset.files`` because that silently skips missing paths.

    Raises:
        FileNotFoundError: If a path does not exist or nothing matches.
    """
    items = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    found: set[Path] = set()
    for item in map(Path, items):
        if item.is_dir():
            found |= {p for p in item.rglob("*") if p.suffix.lower() in (".tif", ".tiff")}
        elif item.is_file():
            found.add(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or directory")
    if not found:
        raise FileNotFoundError(f"no GeoTIFF (*.tif) files under {[str(p) for p in items]}")
    return sorted(found)


def gsd_metres(crs: CRS, res: tuple[float, float]) -> float:
    """Ground sampling distance in metres of a grid.

    Degrees convert at the equator of the WGS84 ellipsoid, the convention of exporters such as
    Earth Engine (a "10 m" EPSG:4326 export has 8.983e-5 degree pixels).
    """
    if crs.is_geographic:
        return float(res[1]) * math.pi / 180.0 * WGS84_SEMI_MAJOR_M
    return float(res[1]) * float(crs.linear_units_factor[1])


def decimated_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """(rows, cols) of a read scaled down so its longer side is at most ``side`` pixels."""
    scale = max(1.0, max(width, height) / side)
    return max(1, round(height / scale)), max(1, round(width / scale))


@dataclass
class Grid:
    """The output grid of one query."""

    transform: Affine
    height: int
    width: int


def overlapping(item_bounds: np.ndarray, bounds: tuple[float, ...]) -> np.ndarray:
    """Indices of items whose footprint overlaps ``bounds`` (numpy: geopandas .cx is slower)."""
    xmin, ymin, xmax, ymax = bounds
    b = item_bounds
    overlap = (b[:, 0] < xmax) & (b[:, 2] > xmin) & (b[:, 1] < ymax) & (b[:, 3] > ymin)
    return np.flatnonzero(overlap)


def window_plan(
    transform: Affine, width: int, height: int, grid: Grid
) -> tuple[Window, tuple[int, int, int, int], bool] | None:
    """Source window for the part of the output grid a file covers.

    Hand-written instead of ``boundless=True`` reads, which go through a VRT and are slower.

    Returns:
        (source window, output rows/cols (r0, r1, c0, c1) it fills, whether it is pixel-aligned
        at equal resolution), or None if the file does not cover any output pixel.
    """
    out = grid.transform
    sx, sy = out.a / transform.a, out.e / transform.e  # source pixels per output pixel
    col0 = (out.c - transform.c) / transform.a
    row0 = (out.f - transform.f) / transform.e
    aligned = (
        abs(sx - 1) < 1e-6
        and abs(sy - 1) < 1e-6
        and abs(col0 - round(col0)) < _ALIGN_TOL_PX
        and abs(row0 - round(row0)) < _ALIGN_TOL_PX
    )
    if aligned:
        col0, row0 = float(round(col0)), float(round(row0))
    eps = _ALIGN_TOL_PX
    c0 = max(0, math.ceil((0 - col0) / sx - eps))
    c1 = min(grid.width, math.floor((width - col0) / sx + eps))
    r0 = max(0, math.ceil((0 - row0) / sy - eps))
    r1 = min(grid.height, math.floor((height - row0) / sy + eps))
    if c1 <= c0 or r1 <= r0:
        return None
    if aligned:
        window = Window(int(col0) + c0, int(row0) + r0, c1 - c0, r1 - r0)
    else:
        left, top = max(0.0, col0 + c0 * sx), max(0.0, row0 + r0 * sy)
        window = Window(
            left, top, min(width - left, (c1 - c0) * sx), min(height - top, (r1 - r0) * sy)
        )
    return window, (r0, r1, c0, c1), aligned

"""Tiled, streaming GeoTIFF inference shared by every model family (see docs/tiled_inference.md).

The names below load on first use (PEP 562), so the command modules (``rsfm tile --help``) import
without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# public name -> the submodule that defines it
_EXPORTS = {
    "TiledPredictor": "engine",
    "TileOptions": "engine",
    "TileReport": "engine",
    "tile_raster": "engine",
    "BlendWindows": "tiling",
    "RowBand": "tiling",
    "Tile": "tiling",
    "TileGrid": "tiling",
    "axis_starts": "tiling",
    "ResumableGeoTiffWriter": "writer",
}

if TYPE_CHECKING:
    from rsfm.inference.engine import TiledPredictor, TileOptions, TileReport, tile_raster
    from rsfm.inference.tiling import BlendWindows, RowBand, Tile, TileGrid, axis_starts
    from rsfm.inference.writer import ResumableGeoTiffWriter


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "BlendWindows",
    "ResumableGeoTiffWriter",
    "RowBand",
    "Tile",
    "TileGrid",
    "TileOptions",
    "TileReport",
    "TiledPredictor",
    "axis_starts",
    "tile_raster",
]

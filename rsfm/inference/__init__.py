"""Tiled, streaming GeoTIFF inference shared by every model family (see docs/tiled_inference.md).

The names below load on first use (PEP 562), so the command modules (``rsfm tile --help``) import
without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rsfm.lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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

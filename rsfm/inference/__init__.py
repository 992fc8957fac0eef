"""Tiled, streaming GeoTIFF inference shared by every model family (see docs/tiled_inference.md)."""

from rsfm.inference.engine import TiledPredictor, TileOptions, TileReport, tile_raster
from rsfm.inference.tiling import BlendWindows, RowBand, Tile, TileGrid, axis_starts
from rsfm.inference.writer import ResumableGeoTiffWriter

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

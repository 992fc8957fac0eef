"""Tile grids over a raster and the 2-D blending windows that stitch tile outputs together.

A :class:`TileGrid` covers a ``height x width`` raster with square tiles of ``tile_size`` pixels
that overlap their neighbours by ``overlap`` pixels. The last tile of a row or column is shifted
inward so that it ends on the raster's edge (every tile keeps the model's size); an axis shorter
than one tile gets a single tile whose missing part the engine fills by reflection.

:class:`BlendWindows` gives each tile a weight window (at output resolution, so super-resolution
grids work) that the engine multiplies into the tile's output before accumulating:

* ``"hann"``: a Hann (sin²) taper over the whole tile, strictly positive everywhere;
* ``"cosine"``: flat top with raised-cosine ramps only across the overlap (a Tukey window);
* ``"none"``: no blending: each pixel takes the output of exactly one tile, the one whose
  centre is nearest (cuts in the middle of each overlap). With a model whose receptive-field
  radius is at most ``overlap // 2`` this reproduces whole-image inference exactly.

On sides that lie on the raster's own edge a window keeps full weight (1) up to its peak, so
edge pixels are never divided by a near-zero weight. ``margin`` zeroes a window's outermost
pixels on interior sides only, so outputs that saw a tile's artificial border are discarded:
with ``margin >=`` the model's receptive-field radius, ``"hann"`` and ``"cosine"`` reproduce
whole-image inference too (a weighted mean of identical values).

:class:`RowBand` accumulates weighted tile outputs for the rows still open and hands finished
rows back, so its size is ``tile_size * scale`` output rows of the full width, whatever the height.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy.signal import windows as scipy_windows

BLEND_MODES = ("hann", "cosine", "none")


def axis_starts(length: int, tile_size: int, overlap: int) -> list[int]:
    """Tile start offsets along one axis: stride ``tile_size - overlap``, last tile shifted inward.

    Args:
        length: Number of pixels on the axis.
        tile_size: Tile side in pixels.
        overlap: Pixels shared by neighbouring tiles (``0 <= overlap < tile_size``).

    Returns:
        Sorted, distinct start offsets; ``[0]`` when the axis is shorter than a tile.
    """
    if length <= 0:
        raise ValueError(f"axis length must be positive, got {length}")
    if tile_size <= 0 or not 0 <= overlap < tile_size:
        raise ValueError(
            f"need tile_size > 0 and 0 <= overlap < tile_size, got {tile_size=}, {overlap=}"
        )
    if length <= tile_size:
        return [0]
    starts = list(range(0, length - tile_size + 1, tile_size - overlap))
    if starts[-1] + tile_size < length:
        starts.append(length - tile_size)
    return starts


@dataclass(frozen=True)
class Tile:
    """One tile: grid indexes and its pixel window on the input raster.

    ``height``/``width`` are the pixels that lie on the raster (smaller than the tile size only
    when the raster itself is smaller; the engine pads those tiles by reflection).
    """

    grid_row: int
    grid_col: int
    row: int
    col: int
    height: int
    width: int


class TileGrid:
    """Overlapping square tiles covering a raster, in row-major order.

    Args:
        height: Raster height in pixels.
        width: Raster width in pixels.
        tile_size: Tile side (the model's input size).
        overlap: Pixels shared by neighbouring tiles.
    """

    def __init__(self, height: int, width: int, tile_size: int, overlap: int) -> None:
        self.height, self.width = int(height), int(width)
        self.tile_size, self.overlap = int(tile_size), int(overlap)
        self.row_starts = axis_starts(self.height, self.tile_size, self.overlap)
        self.col_starts = axis_starts(self.width, self.tile_size, self.overlap)

    @property
    def n_rows(self) -> int:
        """Number of tile rows."""
        return len(self.row_starts)

    @property
    def n_cols(self) -> int:
        """Number of tiles per tile row."""
        return len(self.col_starts)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def tile(self, grid_row: int, grid_col: int) -> Tile:
        """The tile at grid position (``grid_row``, ``grid_col``)."""
        row, col = self.row_starts[grid_row], self.col_starts[grid_col]
        height = min(self.tile_size, self.height - row)
        width = min(self.tile_size, self.width - col)
        return Tile(grid_row, grid_col, row, col, height, width)

    def row_tiles(self, grid_row: int) -> list[Tile]:
        """All tiles of one tile row, left to right."""
        return [self.tile(grid_row, c) for c in range(self.n_cols)]

    def row_end(self, grid_row: int) -> int:
        """One past the last raster row that tile row ``grid_row`` covers."""
        return min(self.row_starts[grid_row] + self.tile_size, self.height)

    def final_until(self, grid_row: int) -> int:
        """Raster rows above this one are final once tile rows ``<= grid_row`` are accumulated.

        Later tile rows start at ``row_starts[grid_row + 1]`` or below, so nothing above it can
        change any more; after the last tile row every row is final.
        """
        return self.row_starts[grid_row + 1] if grid_row + 1 < self.n_rows else self.height

    def first_row_reaching(self, raster_row: int) -> int:
        """Index of the first tile row that covers ``raster_row`` or any row below it."""
        for grid_row in range(self.n_rows):
            if self.row_end(grid_row) > raster_row:
                return grid_row
        return self.n_rows


def _window_1d(
    starts: tuple[int, ...],
    index: int,
    length: int,
    tile_size: int,
    overlap: int,
    kind: str,
    scale: int,
    margin: int = 0,
) -> np.ndarray:
    """Weights along one axis for tile ``index`` at output resolution (``extent * scale`` long)."""
    start = starts[index]
    extent = min(tile_size, length - start)
    first, last = index == 0, index == len(starts) - 1
    if kind == "none":
        # Hard cuts in the middle of each overlap: every pixel belongs to exactly one tile.
        cut_lo = 0 if first else (start + starts[index - 1] + tile_size) // 2
        cut_hi = length if last else (starts[index + 1] + start + tile_size) // 2
        weights = np.zeros(extent, dtype=np.float32)
        weights[cut_lo - start : cut_hi - start] = 1.0
        return np.repeat(weights, scale)
    # Interior sides drop ``margin`` pixels (weight 0), the raster's own edges never do.
    lo, hi = (0 if first else margin * scale), (0 if last else margin * scale)
    n = extent * scale - lo - hi
    if kind == "hann":
        # scipy's symmetric Hann of n + 2 points without its two zero end points: > 0 everywhere.
        taper = scipy_windows.hann(n + 2)[1:-1]
    elif kind == "cosine":
        ramp = min((overlap - 2 * margin) * scale, n // 2)
        taper = scipy_windows.tukey(n + 2, alpha=min(1.0, 2.0 * (ramp + 1) / (n + 1)))[1:-1]
    else:
        raise ValueError(f"blend must be one of {BLEND_MODES}, got {kind!r}")
    taper = (taper / taper.max()).astype(np.float32)
    half = n // 2
    if first:  # raster edge: full weight (1) up to the peak
        taper[:half] = 1.0
    if last:
        taper[n - half :] = 1.0
    weights = np.zeros(extent * scale, dtype=np.float32)
    weights[lo : lo + n] = taper
    return weights


class BlendWindows:
    """Per-tile 2-D weight windows at output resolution, cached per tile row and column.

    Args:
        grid: The tile grid.
        kind: ``"hann"``, ``"cosine"`` or ``"none"`` (see the module docstring).
        scale: Output pixels per input pixel along each axis (super-resolution factor).
        margin: Input pixels at each tile's interior sides that get weight 0 (``2 * margin <
            overlap``); set it to the model's receptive-field radius to drop the outputs that
            saw the tile's zero padding.
    """

    def __init__(self, grid: TileGrid, kind: str = "hann", scale: int = 1, margin: int = 0) -> None:
        if kind not in BLEND_MODES:
            raise ValueError(f"blend must be one of {BLEND_MODES}, got {kind!r}")
        if margin < 0 or 2 * margin >= max(grid.overlap, 1):
            raise ValueError(f"need 0 <= 2 * margin < overlap, got {margin=}, {grid.overlap=}")
        self.grid, self.kind, self.scale, self.margin = grid, kind, int(scale), int(margin)
        rows, cols = tuple(grid.row_starts), tuple(grid.col_starts)
        args = (grid.tile_size, grid.overlap, kind, self.scale, self.margin)

        @cache
        def row_weights(index: int) -> np.ndarray:
            return _window_1d(rows, index, grid.height, *args)

        @cache
        def col_weights(index: int) -> np.ndarray:
            return _window_1d(cols, index, grid.width, *args)

        self.row_weights, self.col_weights = row_weights, col_weights

    def window(self, tile: Tile) -> np.ndarray:
        """The tile's weights, float32 ``[height * scale, width * scale]``."""
        return np.outer(self.row_weights(tile.grid_row), self.col_weights(tile.grid_col))


class RowBand:
    """Output and weight accumulators for the open rows only (a sliding band of tile rows).

    Holds ``capacity = min(tile_size, height)`` input rows (``capacity * scale`` output rows)
    starting at raster row ``top``; :meth:`flush` hands back finished rows and slides the band.

    Args:
        channels: Output channels K accumulated.
        grid: The tile grid (raster size and tile size).
        scale: Output pixels per input pixel.
        top: First raster row of the band.
    """

    def __init__(self, channels: int, grid: TileGrid, scale: int, top: int) -> None:
        self.scale, self.top = scale, top
        self.capacity = capacity = min(grid.tile_size, grid.height)
        width = grid.width * scale
        self.values = np.zeros((channels, capacity * scale, width), dtype=np.float32)
        self.weight = np.zeros((capacity * scale, width), dtype=np.float32)
        self.valid = np.zeros((capacity, grid.width), dtype=bool)
        tile_width = min(grid.tile_size, grid.width) * scale
        self._scratch = np.empty((channels, capacity * scale, tile_width), dtype=np.float32)
        self.max_rows = 0  # most output rows ever in use at once

    def add(self, tile: Tile, output: np.ndarray, window: np.ndarray, valid: np.ndarray) -> None:
        """Accumulate one tile's output (``[K, h*s, w*s]``) weighted by ``window``."""
        offset = tile.row - self.top
        if offset < 0 or offset + tile.height > self.capacity:
            raise RuntimeError(f"tile at row {tile.row} is outside the open band at {self.top}")
        s = self.scale
        rows = slice(offset * s, (offset + tile.height) * s)
        cols = slice(tile.col * s, (tile.col + tile.width) * s)
        scratch = self._scratch[:, : rows.stop - rows.start, : cols.stop - cols.start]
        np.multiply(output, window, out=scratch)  # reused buffer: no per-tile allocation
        self.values[:, rows, cols] += scratch
        self.weight[rows, cols] += window
        self.valid[offset : offset + tile.height, tile.col : tile.col + tile.width] = valid
        self.max_rows = max(self.max_rows, (offset + tile.height) * s)

    def flush(
        self, until: int, finish: Callable[..., np.ndarray], chunk_rows: int = 32
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first output row, finish(values, weight, valid))`` for the finished input
        rows ``[top, until)`` in slices of ``chunk_rows`` input rows, then slide the band down.

        ``finish`` gets views (no copies) at output resolution and must return a new array;
        slicing keeps its temporaries small whatever the raster's width.
        """
        n, s = until - self.top, self.scale
        for first in range(0, n, chunk_rows):
            last = min(first + chunk_rows, n)
            valid = np.repeat(np.repeat(self.valid[first:last], s, axis=0), s, axis=1)
            rows = slice(first * s, last * s)
            yield (self.top + first) * s, finish(self.values[:, rows], self.weight[rows], valid)
        keep = self.capacity - n
        for channel in self.values:  # per channel: source and target rarely overlap, no temp
            channel[: keep * s] = channel[n * s :]
            channel[keep * s :] = 0.0
        self.weight[: keep * s] = self.weight[n * s :]
        self.weight[keep * s :] = 0.0
        self.valid[:keep] = self.valid[n:]
        self.valid[keep:] = False
        self.top = until

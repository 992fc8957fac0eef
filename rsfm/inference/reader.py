"""The tiled engine's background reader: windowed reads, nodata masks, normalisation, batches.

rasterio releases the GIL while GDAL decodes, so this thread's reads overlap the model's
forward pass in :class:`~rsfm.inference.engine.TiledPredictor`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioError
from rasterio.windows import Window

from rsfm.data.errors import (
    NonFiniteError,
    UnreadableRasterError,
)
from rsfm.inference.tiling import Tile, TileGrid
from rsfm.sensors import bad_band_mask

END_OF_STREAM = object()  # end-of-stream marker in the read-ahead queue
Normalize = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class TileBatch:
    """One batch from the reader: ``tiles`` in grid order, ``kept`` those holding data."""

    tiles: list[Tile]  # every tile of the batch, skipped ones included (for row bookkeeping)
    kept: list[Tile]  # tiles fed to the model, one per row of ``image``
    image: torch.Tensor | None  # [n, C, T, T] normalised, nodata pixels 0; None if all skipped
    valid: list[np.ndarray]  # per kept tile: bool [height, width]


class TileReader(threading.Thread):
    """Background reader: one batch per fixed slice of the row-major tile list, into a queue.

    rasterio releases the GIL while GDAL decodes, so reads overlap the model's forward pass;
    the bounded queue (``read_ahead`` batches) stops it from running ahead of the model.
    """

    def __init__(
        self,
        path: Path,
        bands: list[int],
        grid: TileGrid,
        start_tile: int,
        batch_size: int,
        normalize: Normalize | None,
        out: queue.Queue,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"rsfm-tile-reader:{path.name}", daemon=True)
        self.path, self.bands, self.grid = path, bands, grid
        self.start_tile, self.batch_size, self.normalize = start_tile, batch_size, normalize
        self.out, self.stop = out, stop

    def run(self) -> None:
        # torch's thread count is per thread: one here, so normalising does not start a second
        # pool competing with the model's threads for the same cores.
        torch.set_num_threads(1)
        try:
            with rasterio.open(self.path) as src:
                nodatas = [src.nodatavals[b - 1] for b in self.bands]
                # bad bands (ENVI bbl=0), as in training: their nodata never invalidates a pixel
                good = bad_band_mask(self.path)  # True = good band
                self._bad = [not bool(good[b - 1]) for b in self.bands]
                flags = [src.mask_flag_enums[b - 1] for b in self.bands]
                use_mask = any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags)
                is_float = np.issubdtype(np.dtype(src.dtypes[self.bands[0] - 1]), np.floating)
                for first in range(self.start_tile, len(self.grid), self.batch_size):
                    if self.stop.is_set():
                        return
                    last = min(first + self.batch_size, len(self.grid))
                    self._read_batch(src, first, last, nodatas, use_mask, is_float)
            self._put(END_OF_STREAM)
        except BaseException as err:  # handed to the main thread, which re-raises it
            self._put(err)

    def _put(self, item: object) -> None:
        while not self.stop.is_set():
            try:
                self.out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read_batch(
        self, src: Any, first: int, last: int, nodatas: list, use_mask: bool, is_float: bool
    ) -> None:
        """Tiles ``[first, last)`` (row-major): one window per tile row they span.

        A window spans its tiles' union, so shared columns are decoded once, and its size (not
        the raster's width) bounds the reader's memory.
        """
        grid, size = self.grid, self.grid.tile_size
        tiles = [grid.tile(*divmod(index, grid.n_cols)) for index in range(first, last)]
        kept: list[Tile] = []
        pieces: list[tuple[np.ndarray, np.ndarray]] = []
        for grid_row in sorted({t.grid_row for t in tiles}):
            group = [t for t in tiles if t.grid_row == grid_row]
            raw, valid = self._read_window(src, group, nodatas, use_mask, is_float)
            left = group[0].col
            for tile in group:
                cols = slice(tile.col - left, tile.col - left + tile.width)
                if valid[:, cols].any():
                    kept.append(tile)
                    pieces.append((raw[:, :, cols], valid[:, cols]))
        batch = np.empty((len(kept), len(self.bands), size, size), dtype=np.float32)
        for image, tile, (pixels, tile_valid) in zip(batch, kept, pieces, strict=True):
            inside = image[:, : tile.height, : tile.width]
            inside[...] = pixels
            inside[:, ~tile_valid] = 0.0
            if tile.height < size or tile.width < size:  # raster smaller than one tile
                pad = ((0, 0), (0, size - tile.height), (0, size - tile.width))
                image[...] = np.pad(inside, pad, mode="reflect")
        valids = [tile_valid for _, tile_valid in pieces]
        nodata = None
        if not all(v.all() for v in valids):
            nodata = torch.zeros((len(kept), 1, size, size), dtype=torch.bool)
            for mask, tile_valid in zip(nodata, valids, strict=True):
                mask[0, : tile_valid.shape[0], : tile_valid.shape[1]] = torch.from_numpy(
                    ~tile_valid
                )
        image = torch.from_numpy(batch) if kept else None
        if image is not None and self.normalize is not None:
            image = self.normalize(image)
            if nodata is not None:  # nodata stays 0 after normalisation
                image = image.masked_fill(nodata, 0.0)
        self._put(TileBatch(tiles, kept, image, valids))

    def _read_window(
        self, src: Any, group: list[Tile], nodatas: list, use_mask: bool, is_float: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Native-dtype pixels ``[C, h, w]`` of the group's window and its valid mask."""
        top, left = group[0].row, group[0].col
        window = Window(left, top, group[-1].col + group[-1].width - left, group[0].height)
        where = f"rows {top}:{top + window.height}, cols {left}:{left + window.width}"
        try:
            raw = src.read(self.bands, window=window)
            mask = src.dataset_mask(window=window) if use_mask else None
        except RasterioError as err:
            raise UnreadableRasterError(self.path, f"cannot decode window {where} ({err})") from err
        valid = np.ones(raw.shape[1:], dtype=bool)
        bad_bands = getattr(self, "_bad", [False] * len(raw))
        for band, nodata, bad in zip(raw, nodatas, bad_bands, strict=True):
            if bad:  # zero its gaps (training does the same) instead of masking the pixel
                gaps = ~np.isfinite(band) if nodata is None or np.isnan(nodata) else band == nodata
                band[gaps] = 0
            elif nodata is not None:
                valid &= ~np.isnan(band) if np.isnan(nodata) else band != nodata
        if mask is not None:
            valid &= mask > 0
        if is_float:
            bad = ~np.isfinite(raw) & valid  # bad bands' gaps are zero already
            if bad.any():
                raise NonFiniteError(
                    self.path,
                    f"window {where} holds {int(bad.sum())} NaN/inf values that are not the "
                    "declared nodata; set the file's nodata or clean it",
                )
        return raw, valid


def auto_cache_mb(path: Path) -> int:
    """GDAL cache for two block rows of the input across its width (+8 MB), at least 64 MB.

    Consecutive tile rows share an input block row; keeping two decoded saves a third of the
    decoding at 8192 px width (measured). Grows with the raster's width only.
    """
    try:
        with rasterio.open(path) as src:
            block_rows = src.block_shapes[0][0] if src.block_shapes else 256
            itemsize = max(np.dtype(d).itemsize for d in src.dtypes)
            strip = min(block_rows, src.height) * src.width * src.count * itemsize
    except RasterioError:
        return 64  # the run itself reports the unreadable file
    return max(64, int(2 * strip / 2**20) + 8)

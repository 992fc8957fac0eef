"""Map-style views of geo datasets: random or grid windows addressable by an integer index.

Lightning shards map-style datasets across DDP ranks by itself (DistributedSampler), so wrapping
torchgeo-style geo datasets this way gives multi-GPU data loading with no custom sampler code.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchgeo.datasets.utils import GeoSlice
from torchgeo.samplers import GridGeoSampler


def _tiles(dataset: Any) -> list[tuple[tuple[float, float, float, float], slice]]:
    """(xmin, ymin, xmax, ymax) and time slice of every file in a torchgeo-style index."""
    tiles = []
    for interval, geometry in zip(dataset.index.index, dataset.index.geometry, strict=True):
        tiles.append((tuple(geometry.bounds), slice(interval.left, interval.right)))
    return tiles


class RandomWindows(Dataset):
    """``length`` random windows of ``size`` pixels from a geo dataset.

    Window ``i`` is drawn from a generator seeded by (seed, i, the process's torch seed, a call
    counter): reproducible under ``seed_everything``, different every epoch, and different on
    every DDP rank (each rank gets other indices).

    Args:
        dataset: A geo dataset indexed by GeoSlice queries (``index``, ``res`` as torchgeo's).
        size: Window side in pixels of the dataset's grid.
        length: Windows per epoch.
        seed: Base seed.
        fixed: If True, window ``i`` is always the same (for validation).
    """

    def __init__(self, dataset: Any, size: int, length: int, seed: int = 0, fixed: bool = False):
        self.dataset = dataset
        self.size = size
        self.length = length
        self.seed = seed
        self.fixed = fixed
        self._calls = 0
        self.tiles = _tiles(dataset)
        res_x, res_y = _res(dataset)
        self.extent = (size * res_x, size * res_y)
        areas = []
        for (xmin, ymin, xmax, ymax), _ in self.tiles:
            width, height = xmax - xmin, ymax - ymin
            fits = width >= self.extent[0] - 1e-6 and height >= self.extent[1] - 1e-6
            areas.append(width * height if fits else 0.0)
        total = float(sum(areas))
        if total == 0.0:
            raise ValueError(
                f"no file of {type(dataset).__name__} is at least {size} px wide and tall; "
                "use a smaller patch size"
            )
        self.weights = np.asarray(areas) / total

    def __len__(self) -> int:
        return self.length

    def query(self, index: int) -> GeoSlice:
        """The GeoSlice of window ``index`` (draws a new one unless ``fixed``)."""
        if self.fixed:
            entropy = [self.seed, index]
        else:
            self._calls += 1
            entropy = [self.seed, index, torch.initial_seed() % (2**63), self._calls]
        rng = np.random.default_rng(entropy)
        tile = int(rng.choice(len(self.tiles), p=self.weights))
        (xmin, ymin, xmax, ymax), time = self.tiles[tile]
        res_x, res_y = _res(self.dataset)
        # Snap to the pixel grid so windows never straddle pixels (no resampling on read).
        nx = int(round((xmax - xmin - self.extent[0]) / res_x))
        ny = int(round((ymax - ymin - self.extent[1]) / res_y))
        x0 = xmin + int(rng.integers(0, nx + 1)) * res_x
        y0 = ymin + int(rng.integers(0, ny + 1)) * res_y
        return (slice(x0, x0 + self.extent[0]), slice(y0, y0 + self.extent[1]), time)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        return self.dataset[self.query(index)]


class GridWindows(Dataset):
    """All windows of torchgeo's ``GridGeoSampler`` (deterministic; for validation/prediction).

    Args:
        dataset: A geo dataset.
        size: Window side in pixels.
        stride: Step in pixels (default: ``size``, no overlap).
        limit: Keep at most this many windows (evenly spaced), or all when None.
    """

    def __init__(
        self, dataset: Any, size: int, stride: int | None = None, limit: int | None = None
    ):
        self.dataset = dataset
        res_x, _ = _res(dataset)
        sampler = GridGeoSampler(dataset, size=size, stride=stride or size)
        queries = list(sampler)
        if limit is not None and len(queries) > limit:
            keep = np.linspace(0, len(queries) - 1, limit).round().astype(int)
            queries = [queries[i] for i in keep]
        self.queries = queries

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        return self.dataset[self.queries[index]]


def _res(dataset: Any) -> tuple[float, float]:
    res = dataset.res
    if isinstance(res, (int, float)):
        return float(res), float(res)
    return float(res[0]), float(res[1])


def stable_hash(text: str) -> int:
    """A process-independent 32-bit hash (Python's ``hash`` is salted per process)."""
    return zlib.crc32(text.encode())

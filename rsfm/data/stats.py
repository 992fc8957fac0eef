"""Band statistics of a raster dataset from its valid pixels (:class:`BandStats`)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from rsfm.band_stats import STATS_FILENAME, BandStats
from rsfm.data.errors import EmptyRasterError, EmptyWindowError
from rsfm.data.raster import SensorRasterDataset

MIN_PIXELS = 64  # fewer valid pixels give no meaningful 1/99 % clip or std


def default_stats_path(dataset: SensorRasterDataset) -> Path:
    """``band_stats.json`` in the dataset's data root (its first path, or that file's folder)."""
    paths = dataset.paths
    first = Path(paths if isinstance(paths, str | os.PathLike) else next(iter(paths)))
    return (first if first.is_dir() else first.parent) / STATS_FILENAME


def grid_windows(dataset: SensorRasterDataset, patch_size: int) -> list[tuple[slice, slice]]:
    """Every file cut into non-overlapping ``patch_size`` windows (last row / column clipped)."""
    xres, yres = dataset.res
    step_x, step_y = patch_size * xres, patch_size * yres
    windows = []
    for minx, miny, maxx, maxy in dataset.index.geometry.bounds.itertuples(index=False):
        n_cols = max(1, math.ceil(round((maxx - minx) / step_x, 6)))
        n_rows = max(1, math.ceil(round((maxy - miny) / step_y, 6)))
        for row in range(n_rows):
            top = maxy - row * step_y
            for col in range(n_cols):
                left = minx + col * step_x
                x = slice(left, min(left + step_x, maxx), xres)
                windows.append((x, slice(max(top - step_y, miny), top, yres)))
    return windows


def _random_windows(
    dataset: SensorRasterDataset, n_samples: int, patch_size: int, seed: int
) -> list:
    """``n_samples`` windows from torchgeo's ``RandomGeoSampler`` (shrunk to the smallest file)."""
    from torchgeo.samplers import RandomGeoSampler

    xres, yres = dataset.res
    sizes = dataset.index.geometry.bounds
    smallest = min(
        ((sizes.maxx - sizes.minx) / xres).min(), ((sizes.maxy - sizes.miny) / yres).min()
    )
    size = max(1, min(patch_size, int(smallest)))
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomGeoSampler(dataset, size=size, length=n_samples, generator=generator)
    # torchgeo 0.8's RandomGeoSampler picks the file with the global torch RNG (multinomial
    # without its generator): draw the queries under a forked, seeded global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return list(sampler)


def _pixel_keys(sample: dict, valid: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """Integer (column, row) positions on the dataset's pixel grid of the pixels used."""
    transform = sample["transform"]
    rows, cols = np.nonzero(valid)
    if keep is not None:
        rows, cols = rows[keep], cols[keep]
    x = np.rint(transform.c / transform.a + cols).astype(np.int64)
    y = np.rint(transform.f / transform.e + rows).astype(np.int64)
    return np.stack([x, y], axis=1)


def compute_band_stats(
    dataset: SensorRasterDataset,
    n_samples: int = 64,
    percentiles: tuple[float, float] = (1.0, 99.0),
    seed: int = 0,
    patch_size: int = 128,
    max_pixels_per_patch: int = 4096,
    whole: bool = False,
) -> BandStats:
    """Percentile / mean / std statistics from windows of the dataset, valid pixels only.

    ``n_samples`` random windows come from torchgeo's ``RandomGeoSampler`` (seeded). With
    ``whole`` (``rsfm data stats``), files that fit in ``n_samples`` non-overlapping
    ``patch_size`` windows (:func:`grid_windows`) are read whole instead: each pixel once, and
    every pixel scanned for NaN/inf by the dataset's reads (random windows rarely reach a
    raster's edges). Per band the valid pixels are clipped to the percentiles, then mean and
    std are taken (as SMARTIES does). ``n_pixels`` counts the distinct pixel positions used
    (random windows overlap), so it never exceeds the files' pixels.

    Args:
        dataset: The dataset (its own normalisation, if any, is bypassed).
        n_samples: Most windows read.
        percentiles: Lower and upper clip percentiles.
        seed: Seed of the window sampler and of the pixel subsampling.
        patch_size: Window side in pixels (random windows: shrunk to fit the smallest file).
        max_pixels_per_patch: Valid pixels kept per window (random subset) to bound memory.
        whole: Read small datasets whole (see above); training keeps random windows.

    Raises:
        EmptyRasterError: If the windows read hold fewer than ``MIN_PIXELS`` valid pixels.
        NonFiniteError: On NaN/inf pixels in a window read that are not nodata (unless the
            dataset was built with ``nonfinite="mask"``).
    """
    queries = grid_windows(dataset, patch_size) if whole else []
    if not whole or len(queries) > n_samples:
        queries = _random_windows(dataset, n_samples, patch_size, seed)
    rng = np.random.default_rng(seed)
    chunks, positions = [], []
    for query in queries:
        try:
            sample = dataset.read(query, normalize=False)
        except EmptyWindowError:
            continue
        if sample is None:
            continue
        valid = sample["valid"].numpy()
        pixels = sample["image"].numpy()[:, valid]
        keep = None
        if pixels.shape[1] > max_pixels_per_patch:
            keep = rng.choice(pixels.shape[1], max_pixels_per_patch, replace=False)
            pixels = pixels[:, keep]
        chunks.append(pixels.astype(np.float64))
        positions.append(_pixel_keys(sample, valid, keep))
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        where = dataset.files[0] if len(dataset.files) == 1 else Path(dataset.files[0]).parent
        raise EmptyRasterError(where, f"no valid pixel in the {len(queries)} windows read")
    n_pixels = len(np.unique(np.concatenate(positions), axis=0))
    if n_pixels < MIN_PIXELS:
        where = dataset.files[0] if len(dataset.files) == 1 else Path(dataset.files[0]).parent
        raise EmptyRasterError(
            where,
            f"too few valid pixels for statistics ({n_pixels} valid pixel"
            f"{'s' if n_pixels != 1 else ''}; at least {MIN_PIXELS} needed for the "
            f"{percentiles[0]:g}/{percentiles[1]:g} % clip); use larger files",
        )
    values = np.concatenate(chunks, axis=1)
    low, high = np.percentile(values, percentiles, axis=1)
    clipped = np.clip(values, low[:, None], high[:, None])
    return BandStats(
        band_names=dataset.sensor.band_names,
        wavelengths=[float(w) for w in dataset.wavelengths],
        low=low.tolist(),
        high=high.tolist(),
        mean=clipped.mean(axis=1).tolist(),
        std=clipped.std(axis=1).tolist(),
        percentiles=percentiles,
        sensor=dataset.sensor.name,
        n_pixels=n_pixels,
    )

"""Band statistics of a raster dataset from random valid windows (:class:`BandStats`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from rsfm.band_stats import STATS_FILENAME, BandStats
from rsfm.data.errors import EmptyWindowError
from rsfm.data.raster import SensorRasterDataset


def default_stats_path(dataset: SensorRasterDataset) -> Path:
    """``band_stats.json`` in the dataset's data root (its first path, or that file's folder)."""
    paths = dataset.paths
    first = Path(paths if isinstance(paths, str | os.PathLike) else next(iter(paths)))
    return (first if first.is_dir() else first.parent) / STATS_FILENAME


def compute_band_stats(
    dataset: SensorRasterDataset,
    n_samples: int = 64,
    percentiles: tuple[float, float] = (1.0, 99.0),
    seed: int = 0,
    patch_size: int = 128,
    max_pixels_per_patch: int = 4096,
) -> BandStats:
    """Percentile / mean / std statistics from random windows, valid pixels only.

    Windows come from torchgeo's ``RandomGeoSampler``; per band the valid pixels are clipped to
    the percentiles, then mean and std are taken (as SMARTIES does).

    Args:
        dataset: The dataset (its own normalisation, if any, is bypassed).
        n_samples: Number of random windows.
        percentiles: Lower and upper clip percentiles.
        seed: Seed of the window sampler and of the pixel subsampling.
        patch_size: Window size in pixels (shrunk to fit the smallest file).
        max_pixels_per_patch: Valid pixels kept per window (random subset) to bound memory.

    Raises:
        ValueError: If no window holds a valid pixel.
    """
    from torchgeo.samplers import RandomGeoSampler

    xres, yres = dataset.res
    sizes = dataset.index.geometry.bounds
    smallest = min(
        ((sizes.maxx - sizes.minx) / xres).min(), ((sizes.maxy - sizes.miny) / yres).min()
    )
    size = max(1, min(patch_size, int(smallest)))
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomGeoSampler(dataset, size=size, length=n_samples, generator=generator)
    rng = np.random.default_rng(seed)
    chunks = []
    # torchgeo 0.8's RandomGeoSampler picks the file with the global torch RNG (multinomial
    # without its generator): draw the queries under a forked, seeded global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        queries = list(sampler)
    for query in queries:
        try:
            sample = dataset.read(query, normalize=False)
        except EmptyWindowError:
            continue
        if sample is None:
            continue
        pixels = sample["image"].numpy()[:, sample["valid"].numpy()]
        if pixels.shape[1] > max_pixels_per_patch:
            keep = rng.choice(pixels.shape[1], max_pixels_per_patch, replace=False)
            pixels = pixels[:, keep]
        chunks.append(pixels.astype(np.float64))
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise ValueError(f"no valid pixels in {n_samples} random windows of {dataset.files[0]}")
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
        n_pixels=int(values.shape[1]),
    )

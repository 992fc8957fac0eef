"""Super-resolution triplets: low-res image, older high-res reference, high-res target.

The three GeoTIFFs may differ in CRS, resolution and extent. :class:`CoRegisteredTriplet` (in
:mod:`rsfm.data.triplet_coregistration`) puts them on ONE target grid (the HR file's, or the LR
grid refined ``scale`` times when there is no target) with rasterio's ``WarpedVRT``
(reprojection + resampling in windowed reads, so memory is bounded by the window): the LR image
on the target grid coarsened by ``scale``, the reference and the target on the target grid.
``scale`` is the ratio of the LR and HR pixel sizes (2..10).

Sample dict (torchgeo convention, see DESIGN.md)::

    lr [C, h, w] (also ``image``), hr [C, H, W], reference [Cr, H, W], valid [H, W] (LR and HR
    data), reference_valid [H, W], wavelengths [C], reference_wavelengths [Cr], scale, gsd,
    crs, bounds, transform (of the HR window), optional changed [H, W] (synthetic world)

:class:`ReferenceDegradation` applies the training-time reference degradations (target as
reference, grey, colour jitter, missing reference) and :class:`TripletDataModule` serves windows
of triplets (the synthetic world's by default) to Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from rsfm.band_stats import BandStats
from rsfm.data.triplet_coregistration import (
    CoRegisteredTriplet,
    TripletFiles,
)


class ReferenceDegradation:
    """Training-time reference degradations (applied to a sample dict, in place).

    One of them per sample, in this priority: missing (reference zeroed, ``reference_valid``
    False), target as reference (the HR target replaces it: teaches copying), grey (all bands
    set to their mean), colour jitter (random per-band gain and offset).

    Args:
        p_missing: Probability of a missing reference.
        p_target: Probability of using the target as reference.
        p_grey: Probability of a grey reference.
        p_jitter: Probability of a colour-jittered reference.
        jitter: Max relative gain change and max offset (in units of the band's std).
    """

    def __init__(
        self,
        p_missing: float = 0.1,
        p_target: float = 0.1,
        p_grey: float = 0.05,
        p_jitter: float = 0.2,
        jitter: float = 0.2,
    ) -> None:
        if p_missing + p_target + p_grey + p_jitter > 1.0:
            raise ValueError("the degradation probabilities must sum to at most 1")
        self.p = (p_missing, p_target, p_grey, p_jitter)
        self.jitter = jitter

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Degrade ``sample["reference"]``; records ``reference_mode``."""
        if "reference" not in sample:
            return sample
        draw, edges = rng.random(), np.cumsum(self.p)
        mode = ("missing", "target", "grey", "jitter", "clean")[
            int(np.searchsorted(edges, draw, side="right"))
        ]
        reference = sample["reference"]
        if mode == "missing":
            sample["reference"] = torch.zeros_like(reference)
            sample["reference_valid"] = torch.zeros_like(sample["reference_valid"])
        elif mode == "target":
            if "hr" in sample and sample["hr"].shape == reference.shape:
                sample["reference"] = sample["hr"].clone()
                sample["reference_valid"] = sample["valid"].clone()
            else:  # the target has other bands than the reference: keep it
                mode = "clean"
        elif mode == "grey":
            sample["reference"] = reference.mean(dim=0, keepdim=True).expand_as(reference).clone()
        elif mode == "jitter":
            bands = reference.shape[0]
            std = reference.flatten(1).std(dim=1).clamp_min(1e-6)[:, None, None]
            gain = torch.from_numpy(1 + self.jitter * rng.uniform(-1, 1, bands)).float()[
                :, None, None
            ]
            offset = torch.from_numpy(self.jitter * rng.uniform(-1, 1, bands)).float()[
                :, None, None
            ]
            sample["reference"] = reference * gain + offset * std
        sample["reference_mode"] = mode
        return sample


class TripletDataset(Dataset):
    """Windows of co-registered triplets (map-style).

    Args:
        triplets: Co-registered triplets.
        patch_size: Window side in HR pixels (rounded down to a multiple of the scale).
        length: Random windows per epoch; None = a regular grid of every triplet.
        stride: Grid stride in HR pixels (default: ``patch_size``).
        degradation: Training-time reference degradation.
        lr_stats: Statistics normalising ``lr`` and ``hr``.
        ref_stats: Statistics normalising ``reference``.
        seed: Seed of window positions and degradations (window ``i`` is always the same).
    """

    def __init__(
        self,
        triplets: Sequence[CoRegisteredTriplet],
        patch_size: int = 64,
        length: int | None = None,
        stride: int | None = None,
        degradation: ReferenceDegradation | None = None,
        lr_stats: BandStats | None = None,
        ref_stats: BandStats | None = None,
        seed: int = 0,
    ) -> None:
        if not triplets:
            raise ValueError("no triplets")
        self.triplets = list(triplets)
        self.patch_size = patch_size
        self.length, self.seed, self.degradation = length, seed, degradation
        self.lr_stats, self.ref_stats = lr_stats, ref_stats
        self.windows: list[tuple[int, int, int, int]] = []  # (triplet, row, col, size)
        for index, triplet in enumerate(self.triplets):
            size = self._size(triplet)
            step = max(triplet.scale, (stride or size) // triplet.scale * triplet.scale)
            for row in range(0, triplet.height - size + 1, step):
                for col in range(0, triplet.width - size + 1, step):
                    self.windows.append((index, row, col, size))

    def _size(self, triplet: CoRegisteredTriplet) -> int:
        size = min(self.patch_size, triplet.height, triplet.width)
        return size // triplet.scale * triplet.scale

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.windows)

    def window(self, index: int) -> tuple[int, int, int, int]:
        """``(triplet, row, col, size)`` of item ``index``."""
        if self.length is None:
            return self.windows[index]
        rng = np.random.default_rng([self.seed, index])
        which = int(rng.integers(len(self.triplets)))
        triplet = self.triplets[which]
        size, s = self._size(triplet), triplet.scale
        row = int(rng.integers(0, (triplet.height - size) // s + 1)) * s
        col = int(rng.integers(0, (triplet.width - size) // s + 1)) * s
        return which, row, col, size

    def __getitem__(self, index: int) -> dict[str, Any]:
        which, row, col, size = self.window(index)
        sample = self.triplets[which].read(row, col, size)
        if self.degradation is not None:
            self.degradation(sample, np.random.default_rng([self.seed, index, 1]))
        return self.normalize(sample)

    def normalize(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Apply the band statistics (nodata pixels stay 0)."""
        if self.lr_stats is not None:
            waves = sample["wavelengths"]
            for key in ("lr", "hr"):
                if key in sample:
                    sample[key] = self.lr_stats.normalize(sample[key], waves)
            if "hr" in sample:
                sample["hr"] = sample["hr"] * sample["valid"]
            sample["image"] = sample["lr"]
        if self.ref_stats is not None and "reference" in sample:
            ref = self.ref_stats.normalize(sample["reference"], sample["reference_wavelengths"])
            sample["reference"] = ref * sample["reference_valid"]
        return sample


def stats_from_windows(
    dataset: TripletDataset,
    key: str,
    n_windows: int = 32,
    percentiles: tuple[float, float] = (1.0, 99.0),
) -> BandStats:
    """BandStats of ``lr`` or ``reference`` from the dataset's first windows (valid pixels)."""
    chunks = []
    wave_key = "wavelengths" if key == "lr" else "reference_wavelengths"
    waves = None
    for index in range(min(n_windows, len(dataset))):
        which, row, col, size = dataset.window(index)
        sample = dataset.triplets[which].read(row, col, size)
        values = sample[key].numpy()
        mask = sample["valid"] if key == "lr" else sample["reference_valid"]
        if key == "lr":
            s = sample["scale"]
            mask = mask[::s, ::s]
        chunks.append(values[:, mask.numpy()].astype(np.float64))
        waves = sample[wave_key].numpy()
    values = np.concatenate(chunks, axis=1)
    if values.shape[1] == 0:
        raise ValueError(f"no valid {key} pixels in the first {n_windows} windows")
    low, high = np.percentile(values, percentiles, axis=1)
    clipped = np.clip(values, low[:, None], high[:, None])
    names = [f"band_{i + 1}" for i in range(values.shape[0])]
    return BandStats(names, [float(w) for w in waves], low.tolist(), high.tolist(),
                     clipped.mean(axis=1).tolist(), clipped.std(axis=1).tolist(), percentiles,
                     key, int(values.shape[1]))  # fmt: skip


def open_triplets(
    files: Sequence[TripletFiles | dict[str, Any]], **kwargs: Any
) -> list[CoRegisteredTriplet]:
    """Co-register several triplets with the same options."""
    return [
        CoRegisteredTriplet(
            f if isinstance(f, TripletFiles) else TripletFiles.from_dict(f), **kwargs
        )
        for f in files
    ]

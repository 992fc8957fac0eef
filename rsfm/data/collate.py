"""Batch collation for sample dicts whose band count differs between samples."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import default_collate

# Keys whose tensors have a leading band axis that may differ between sensors.
BAND_KEYS = ("image", "pair_image")
WAVELENGTH_KEYS = ("wavelengths", "pair_wavelengths")


def collate_samples(samples: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Stack sample dicts into a batch, padding band axes of mixed-sensor batches.

    torchgeo's ``stack_samples`` needs equal shapes; mixed sensors have different band counts, so
    ``image`` / ``pair_image`` are zero-padded to the largest band count and the matching
    ``wavelengths`` / ``pair_wavelengths`` are padded with NaN (the model ignores NaN bands).
    Tensors of equal shape are stacked; everything else (crs, bounds, sensor names) becomes a list.
    ``None`` samples (all-nodata windows skipped by a dataset with ``skip_empty=True``) are
    dropped and counted in ``batch["n_skipped"]`` (an int64 scalar tensor, always present), so a
    trainer can log them; a batch of only skipped samples holds nothing else.

    Args:
        samples: Sample dicts as the data layer's datasets return them, or None.

    Returns:
        A batch dict.
    """
    kept = [s for s in samples if s is not None]
    batch: dict[str, Any] = {}
    for key in kept[0] if kept else ():
        values = [s[key] for s in kept]
        if key in BAND_KEYS:
            batch[key] = _pad_stack(values, fill=0.0)
        elif key in WAVELENGTH_KEYS:
            batch[key] = _pad_stack(values, fill=float("nan"))
        elif (
            all(isinstance(v, torch.Tensor) for v in values)
            and len({tuple(v.shape) for v in values}) == 1
        ):
            batch[key] = default_collate(values)  # in a worker: stacks into shared memory
        elif all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = values
    batch["n_skipped"] = torch.tensor(len(samples) - len(kept), dtype=torch.int64)
    return batch


def _pad_stack(tensors: list[torch.Tensor], fill: float) -> torch.Tensor:
    n_bands = max(t.shape[0] for t in tensors)
    if any(t.shape[0] < n_bands for t in tensors):
        tensors = [
            torch.cat([t, t.new_full((n_bands - t.shape[0], *t.shape[1:]), fill)]) for t in tensors
        ]
    # default_collate stacks straight into shared memory inside DataLoader workers, which
    # saves a full copy of the batch on its way to the main process.
    return default_collate(tensors)

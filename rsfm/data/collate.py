"""Batch collation for sample dicts whose band count differs between samples."""

from __future__ import annotations

from typing import Any

import torch

# Keys whose tensors have a leading band axis that may differ between sensors.
BAND_KEYS = ("image", "pair_image")


def collate_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack sample dicts into a batch, padding band axes of mixed-sensor batches.

    torchgeo's ``stack_samples`` needs equal shapes; mixed sensors have different band counts, so
    ``image`` / ``pair_image`` are zero-padded to the largest band count and the matching
    ``wavelengths`` / ``pair_wavelengths`` are padded with NaN (the model ignores NaN bands).
    Tensors of equal shape are stacked; everything else (crs, bounds, sensor names) becomes a list.

    Args:
        samples: Sample dicts as the data layer's datasets return them.

    Returns:
        A batch dict.
    """
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in BAND_KEYS:
            batch[key] = _pad_stack(values, fill=0.0)
        elif key in ("wavelengths", "pair_wavelengths"):
            batch[key] = _pad_stack(values, fill=float("nan"))
        elif all(isinstance(v, torch.Tensor) for v in values) and len(
            {tuple(v.shape) for v in values}
        ) == 1:
            batch[key] = torch.stack(values)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = values
    return batch


def _pad_stack(tensors: list[torch.Tensor], fill: float) -> torch.Tensor:
    n_bands = max(t.shape[0] for t in tensors)
    out = tensors[0].new_full((len(tensors), n_bands, *tensors[0].shape[1:]), fill)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out

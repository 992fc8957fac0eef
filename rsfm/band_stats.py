"""Per-band normalisation statistics: percentile clipping then standardisation (SMARTIES-style).

The one value type every layer shares (data, models, checkpoints, hub cards, tiled inference).
Statistics are keyed by wavelength, so a model fed a band subset, reordered bands or a padded
mixed-sensor batch picks the right rows; they serialise to JSON (``band_stats.json`` beside the
data by default) and to a dict that model cards embed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATS_FILENAME = "band_stats.json"


@dataclass
class BandStats:
    """Per-band statistics of a dataset.

    Attributes:
        band_names: Band names, one per row.
        wavelengths: Centre wavelengths (nm; signed radar wavelength for SAR) used for matching.
        low: Lower clip value per band (the ``percentiles[0]`` percentile).
        high: Upper clip value per band (the ``percentiles[1]`` percentile).
        mean: Mean of the clipped valid pixels per band.
        std: Standard deviation of the clipped valid pixels per band.
        percentiles: The percentiles that gave ``low`` / ``high``.
        sensor: Name of the sensor the statistics were computed on.
        n_pixels: Number of valid pixels per band the statistics rest on.
    """

    band_names: list[str]
    wavelengths: list[float]
    low: list[float]
    high: list[float]
    mean: list[float]
    std: list[float]
    percentiles: tuple[float, float] = (1.0, 99.0)
    sensor: str = ""
    n_pixels: int = 0

    def __post_init__(self) -> None:
        n = len(self.band_names)
        for key in ("wavelengths", "low", "high", "mean", "std"):
            values = [float(v) for v in getattr(self, key)]
            if len(values) != n:
                raise ValueError(f"BandStats.{key} has {len(values)} values for {n} bands")
            setattr(self, key, values)
        self.band_names = [str(b) for b in self.band_names]
        self.percentiles = (float(self.percentiles[0]), float(self.percentiles[1]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (embedded in model cards)."""
        data = asdict(self)
        data["percentiles"] = list(self.percentiles)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BandStats:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the statistics as JSON (floats round-trip exactly); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(path)  # atomic: a reader never sees a half-written file
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BandStats:
        """Read statistics written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text()))

    def rows_for(self, wavelengths: np.ndarray | torch.Tensor | list[float]) -> np.ndarray:
        """Statistics row of each wavelength (-1 for NaN padding bands).

        Raises:
            ValueError: Naming the wavelength(s) that have no statistics.
        """
        wanted = np.asarray(
            wavelengths.detach().cpu() if isinstance(wavelengths, torch.Tensor) else wavelengths,
            dtype=np.float64,
        )
        table = np.asarray(self.wavelengths, dtype=np.float64)
        close = np.isclose(wanted[:, None], table[None, :], rtol=1e-5, atol=0.01)
        rows = np.where(close.any(axis=1), close.argmax(axis=1), -1)
        unknown = [float(w) for w, r in zip(wanted, rows, strict=True) if r < 0 and np.isfinite(w)]
        if unknown:
            raise ValueError(
                f"no normalisation statistics for wavelength(s) {unknown} nm; the statistics "
                f"({self.sensor or 'unnamed sensor'}) cover {self.wavelengths}"
            )
        return rows

    def normalize(
        self, image: torch.Tensor | np.ndarray, wavelengths: torch.Tensor | np.ndarray
    ) -> torch.Tensor | np.ndarray:
        """Clip each band to its percentiles, then standardise.

        Args:
            image: [C,H,W] (with wavelengths [C]) or [B,C,H,W] (with wavelengths [C] or [B,C]).
            wavelengths: Band wavelengths in nm; NaN marks padding bands, left unchanged.

        Returns:
            The normalised image, same type, shape and dtype as ``image``.
        """
        as_numpy = isinstance(image, np.ndarray)
        tensor = torch.from_numpy(image) if as_numpy else image
        waves = torch.as_tensor(wavelengths)
        if tensor.ndim == 4 and waves.ndim == 2:
            pairs = zip(tensor, waves, strict=True)
            out = torch.stack([self._normalize_one(img, w) for img, w in pairs])
        else:
            out = self._normalize_one(tensor, waves)
        return out.numpy() if as_numpy else out

    def _normalize_one(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        rows = self.rows_for(wavelengths)
        pad = rows < 0
        safe = np.where(pad, 0, rows)

        def column(values: list[float], fill: float) -> torch.Tensor:
            col = np.asarray(values, dtype=np.float64)[safe]
            col[pad] = fill
            return torch.as_tensor(col, dtype=image.dtype, device=image.device)[:, None, None]

        std = column(self.std, 1.0)
        std = torch.where(std > 0, std, torch.ones_like(std))  # constant band: avoid 0-division
        low, high = column(self.low, -np.inf), column(self.high, np.inf)
        clipped = torch.minimum(torch.maximum(image, low), high)
        return (clipped - column(self.mean, 0.0)) / std

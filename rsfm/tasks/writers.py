"""Prediction writers: persist what ``rsfm predict`` computes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter


class EmbeddingWriter(BasePredictionWriter):
    """Writes pooled embeddings with their windows' georeferencing to one ``.npz`` file.

    The file holds ``embedding`` [N, D] float32, ``bounds`` [N, 4] (xmin, ymin, xmax, ymax in
    each window's CRS), ``crs`` [N] (WKT strings) and ``sensor`` [N]. Written atomically.

    Args:
        output: Path of the ``.npz`` file.
    """

    def __init__(self, output: str = "predictions/embeddings.npz") -> None:
        super().__init__(write_interval="epoch")
        self.output = Path(output)

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        """Concatenate every batch's predictions and save them."""
        batches = (
            predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        )
        embeddings = torch.cat([b["embedding"].float().cpu() for b in batches]).numpy()
        bounds = np.array([tuple(x) for b in batches for x in (b.get("bounds") or [])], dtype=float)
        sensors = np.array([s for b in batches for s in (b.get("sensor") or [])])
        crs = np.array([str(c) for b in batches for c in (b.get("crs") or [])])
        self.output.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.output.with_name(f".{self.output.stem}.{os.getpid()}.tmp.npz")
        np.savez(tmp, embedding=embeddings, bounds=bounds, sensor=sensors, crs=crs)
        os.replace(tmp, self.output)

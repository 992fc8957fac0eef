"""A zoo of synthetic segmenters of different quality (for building SQA datasets).

Each is a ``smarties_tiny_seg_linear`` fine-tuned for a different number of steps, some with a
confusion between classes, so an assessor has segmenters of every accuracy to learn from.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import nn

from rsfm.data.datamodules.labelled import LabelledGeoDataModule
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.models.sqa import ConfusedSegmenter, Segmenter
from rsfm.tasks.segmentation import SegmentationTask


def _train_segmenter(
    datamodule: Any, steps: int, seed: int, lr: float, class_weights: list[float] | None
) -> nn.Module:
    """A ``smarties_tiny_seg_linear`` fine-tuned (all weights) for ``steps`` optimiser steps."""
    pl.seed_everything(seed, verbose=False)
    task = SegmentationTask(
        model="smarties_tiny_seg_linear",
        num_classes=datamodule.num_classes,
        mode="full",
        lr=lr,
        warmup_epochs=0,
        scheduler="constant",
        weight_decay=0.0,
        class_weights=class_weights,
    )
    if steps > 0:
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            max_steps=steps,
            max_epochs=-1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            num_sanity_val_steps=0,
        )
        trainer.fit(task, datamodule=datamodule)
    return task.model.eval()


def synthetic_segmenters(
    synthetic: SyntheticWorldConfig | None = None,
    steps: Sequence[int] = (0, 10, 60),
    blind_class: int | None = 1,
    noise: float | None = 3.0,
    confuse: tuple[int, int] | None = (2, 3),
    seed: int = 0,
    patch_size: int = 32,
    batch_size: int = 16,
    lr: float = 3e-3,
) -> list[Segmenter]:
    """Segmenters of different quality on the synthetic world (for SQA experiments and tests).

    All are ``smarties_tiny_seg_linear`` fine-tuned on the world's training scenes:

    - ``seg_steps<n>``: trained for each number of ``steps`` (0 = untrained head and encoder);
    - ``seg_blind<c>``: the longest training with class ``blind_class`` weighted 0 in the
      loss, so it never learns that class (weak wherever the class covers much of the image);
    - ``seg_noisy``: the longest-trained model with Gaussian noise (``noise`` x each tensor's
      std) added to its head weights (a biased, unevenly degraded classifier);
    - ``seg_confused<a><b>``: the longest-trained model with classes ``confuse`` swapped.

    Returns:
        The segmenters, each with the normalisation statistics it was trained with.
    """
    datamodule = LabelledGeoDataModule(
        task="segmentation",
        synthetic=synthetic or SyntheticWorldConfig(),
        patch_size=patch_size,
        batch_size=batch_size,
        samples_per_epoch=batch_size * max(1, max(steps)),
        val_samples=batch_size,
        stats_samples=32,
        seed=seed,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    stats = datamodule.band_stats[datamodule.stats_key]
    recipe = f"synthetic_segmenters(seed={seed}, steps={list(steps)})"
    out = []
    for k, n in enumerate(steps):  # independent runs: each starts from its own random init
        model = _train_segmenter(datamodule, n, seed + 101 * k, lr, None)
        out.append(Segmenter(f"seg_steps{n}", model, stats, f"{recipe}:steps{n}"))
    longest = max(steps)
    best = out[list(steps).index(longest)].model
    if blind_class is not None:
        weights = [0.0 if k == blind_class else 1.0 for k in range(datamodule.num_classes)]
        model = _train_segmenter(datamodule, longest, seed + 101 * len(steps), lr, weights)
        out.append(Segmenter(f"seg_blind{blind_class}", model, stats, f"{recipe}:blind"))
    if noise:
        noisy = copy.deepcopy(best)
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for param in noisy.head.parameters():
                scale = noise * float(param.std()) if param.numel() > 1 else noise
                param.add_(torch.randn(param.shape, generator=generator) * scale)
        out.append(Segmenter("seg_noisy", noisy, stats, f"{recipe}:noise{noise}"))
    if confuse is not None:
        a, b = confuse
        wrapped = ConfusedSegmenter(best, (a, b)).eval()
        out.append(Segmenter(f"seg_confused{a}{b}", wrapped, stats, f"{recipe}:confuse"))
    return out

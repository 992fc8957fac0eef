"""Trained-head protocols of ``rsfm evaluate``: a UPerNet (dense) or pooled head on the encoder.

- ``frozen_head``: the encoder is frozen (eval mode, no gradients), only the head trains, as
  PANGAEA / GEO-Bench's frozen-encoder protocol: a UPerNet head on four evenly spaced encoder
  blocks for segmentation, a pooled linear head for classification / multi-label.
- ``finetune``: the same head, and the encoder trains too, at a tenth of the head's rate.

Training draws random crops (``HeadRecipe.crop`` px, on the patch grid) of the train split's
chips with the run's seed, for a fixed number of AdamW steps; no validation split and no model
selection. Test chips are predicted whole (padded to the patch size) and scored on their
labelled pixels, as the probes are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from rsfm.data.catalogue import ChipDataset, DatasetInfo
from rsfm.evaluation.probes import IGNORE_INDEX

HEAD_PROTOCOLS = ("frozen_head", "finetune")


@dataclass(frozen=True)
class HeadRecipe:
    """How a head is trained (the same for every encoder of a table)."""

    steps: int = 200
    batch_size: int = 8
    crop: int = 64
    lr: float = 1e-3
    encoder_lr_factor: float = 0.1
    weight_decay: float = 0.01
    channels: int = 32


def head_model(
    config: dict[str, Any],
    encoder: nn.Module,
    info: DatasetInfo,
    seed: int,
    recipe: HeadRecipe = HeadRecipe(),
) -> nn.Module:
    """A :class:`~rsfm.models.finetune.FineTuneModel` of the encoder's architecture (``config``
    from :func:`~rsfm.models.registry.model_config` of the evaluated model) with a fresh head
    for ``info``'s task (initialised with ``seed``), holding a copy of ``encoder``'s weights."""
    from rsfm.models.finetune import FineTuneModel

    torch.manual_seed(seed)
    dense = info.task == "segmentation"
    model = FineTuneModel(
        backbone=config["name"],
        backbone_args=dict(config.get("init_args") or {}),
        head="upernet" if dense else "pooled",
        num_outputs=info.num_classes,
        head_args={"channels": recipe.channels} if dense else {},
        pool="avg",
    )
    model.encoder.load_state_dict(encoder.state_dict())
    return model


def _crops(
    dataset: ChipDataset, size: int, count: int, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """``count`` random ``size``-px crops of random chips (chips are padded when smaller)."""
    images, waves, targets = [], [], []
    for index in torch.randint(len(dataset), (count,), generator=generator).tolist():
        item = dataset[index]
        image, height, width = item["image"], *item["image"].shape[-2:]
        top = int(torch.randint(max(1, height - size + 1), (1,), generator=generator))
        left = int(torch.randint(max(1, width - size + 1), (1,), generator=generator))
        window = (slice(top, top + size), slice(left, left + size))
        pad = (0, max(0, size - width), 0, max(0, size - height))
        images.append(F.pad(image[(slice(None), *window)], pad))
        waves.append(item["wavelengths"])
        if "mask" in item:
            targets.append(F.pad(item["mask"][window], pad, value=IGNORE_INDEX))
        else:
            targets.append(item["label"])
    return {"image": torch.stack(images), "wavelengths": torch.stack(waves),
            "target": torch.stack(targets)}  # fmt: skip


def _loss(info: DatasetInfo, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if info.task == "multilabel":
        return F.binary_cross_entropy_with_logits(output, target.float())
    return F.cross_entropy(output, target.long(), ignore_index=IGNORE_INDEX)


def train_head(
    model: nn.Module,
    train: ChipDataset,
    protocol: str,
    seed: int,
    recipe: HeadRecipe = HeadRecipe(),
) -> list[float]:
    """Train ``model``'s head (and encoder for ``finetune``) in place; the per-step losses."""
    if protocol not in HEAD_PROTOCOLS:
        raise ValueError(f"unknown head protocol {protocol!r}; expected one of {HEAD_PROTOCOLS}")
    model.set_mode("frozen" if protocol == "frozen_head" else "full")
    torch.manual_seed(seed)
    groups = [{"params": list(model.head.parameters()), "lr": recipe.lr}]
    if protocol == "finetune":
        groups.append(
            {"params": list(model.encoder.parameters()), "lr": recipe.lr * recipe.encoder_lr_factor}
        )
    optimiser = torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
    patch = int(model.encoder.patch_size)
    size = max(patch, recipe.crop // patch * patch)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(recipe.steps):
        batch = _crops(train, size, recipe.batch_size, generator)
        output = model(batch["image"], batch["wavelengths"])
        loss = _loss(train.info, output, batch["target"])
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def predict_split(model: nn.Module, test: ChipDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores and targets of the test split: labelled pixels (dense) or one row per chip."""
    model.eval()
    patch = int(model.encoder.patch_size)
    scores, targets = [], []
    for index in range(len(test)):
        item = test[index]
        image = item["image"][None]
        height, width = image.shape[-2:]
        padded = F.pad(image, (0, (-width) % patch, 0, (-height) % patch))
        output = model(padded, item["wavelengths"])
        if "mask" in item:
            keep = item["mask"] != IGNORE_INDEX
            scores.append(output[0, :, :height, :width].permute(1, 2, 0)[keep])
            targets.append(item["mask"][keep])
        else:
            scores.append(output)
            targets.append(item["label"][None])
    return torch.cat(scores), torch.cat(targets)

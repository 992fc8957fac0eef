"""Task heads over ViT encoder features: pooled linear, dense linear, UPerNet.

Dense heads take a list of feature maps ``[B, D, h, w]`` (patch tokens laid out on their grid,
one map per selected encoder block; ``h = H / p``) and return ``[B, K, H, W]`` at the input
size. The pooled head takes one vector per image ``[B, D]`` and returns ``[B, K]``.

Linear probing follows SMARTIES / MAE: the frozen features pass a BatchNorm without affine
parameters (a per-feature standardisation learnt from the data) before the linear layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.decoders.upernet.decoder import UPerNetDecoder
from torch import nn


def _init_linear(layer: nn.Linear | nn.Conv2d, std: float = 0.01) -> None:
    """MAE's linear-probe initialisation: truncated normal (std 0.01), zero bias."""
    nn.init.trunc_normal_(layer.weight, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def _resize(logits: torch.Tensor, output_size: tuple[int, int]) -> torch.Tensor:
    if tuple(logits.shape[-2:]) == tuple(output_size):
        return logits
    return F.interpolate(logits, size=output_size, mode="bilinear", align_corners=False)


class PooledHead(nn.Module):
    """Linear classifier / regressor on pooled features: ``[B, D] -> [B, K]``.

    Args:
        embed_dim: Feature size D.
        num_outputs: Classes (or regression targets) K.
        batchnorm: Standardise features with ``BatchNorm1d(affine=False)`` (linear probe).
        dropout: Dropout before the linear layer.
    """

    def __init__(
        self, embed_dim: int, num_outputs: int, batchnorm: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(embed_dim, affine=False, eps=1e-6) if batchnorm else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = nn.Linear(embed_dim, num_outputs)
        _init_linear(self.linear)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` of pooled features ``[B, D]``."""
        if self.norm is not None:
            pooled = self.norm(pooled)
        return self.linear(self.dropout(pooled))


class LinearHead(nn.Module):
    """Per-token linear layer on the last feature map, upsampled bilinearly to the input.

    Args:
        embed_dim: Token size D.
        num_outputs: Classes (or regression channels) K.
        batchnorm: Standardise tokens with ``BatchNorm2d(affine=False)`` first (linear probe).
        dropout: Channel dropout before the linear layer.
    """

    def __init__(
        self, embed_dim: int, num_outputs: int, batchnorm: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(embed_dim, affine=False, eps=1e-6) if batchnorm else None
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(embed_dim, num_outputs, kernel_size=1)  # linear per token
        _init_linear(self.classifier)

    def forward(
        self, features: Sequence[torch.Tensor], output_size: tuple[int, int]
    ) -> torch.Tensor:
        """``[B, K, *output_size]`` from the last of ``features`` (``[B, D, h, w]`` each)."""
        x = features[-1]
        if self.norm is not None:
            x = self.norm(x)
        return _resize(self.classifier(self.dropout(x)), output_size)


def _rescale(embed_dim: int, scale: float) -> nn.Module:
    """Resample a stride-p ViT map by ``scale`` (a power of two): deconvs up, max-pool down."""
    steps = round(math.log2(scale))
    if 2.0**steps != scale:
        raise ValueError(f"pyramid scales must be powers of two, got {scale}")
    if steps == 0:
        return nn.Identity()
    if steps < 0:
        return nn.MaxPool2d(kernel_size=2**-steps, stride=2**-steps)
    layers: list[nn.Module] = []
    for i in range(steps):
        if i:
            layers += [nn.BatchNorm2d(embed_dim), nn.GELU()]
        layers.append(nn.ConvTranspose2d(embed_dim, embed_dim, kernel_size=2, stride=2))
    return nn.Sequential(*layers)


class UPerNetHead(nn.Module):
    """UPerNet (Xiao et al. 2018) over a plain ViT, as BEiT / MAE segment with it.

    A ViT has one stride, so a pyramid is made first (BEiT's neck): the selected block outputs
    are resampled by ``scales`` (x4 and x2 by transposed convolutions, x1 unchanged, x0.5 by
    max-pooling). segmentation_models_pytorch's ``UPerNetDecoder`` then fuses them: a pyramid
    pooling module on the coarsest map, an FPN top-down path and a fusion convolution. A 1x1
    classifier and bilinear upsampling give ``[B, K, H, W]``.

    Args:
        embed_dim: Token size D of every feature map.
        num_outputs: Classes (or regression channels) K.
        num_features: Number of feature maps the head receives (one per scale).
        channels: Decoder width.
        scales: Resampling factor of each feature map, finest first.
        dropout: Channel dropout before the classifier.
    """

    def __init__(
        self,
        embed_dim: int,
        num_outputs: int,
        num_features: int = 4,
        channels: int = 256,
        scales: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        scales = [float(s) for s in scales]
        if len(scales) != num_features:
            raise ValueError(f"{num_features} feature maps need {num_features} scales: {scales}")
        if len(scales) < 2 or sorted(scales, reverse=True) != scales:
            raise ValueError(f"scales must hold >= 2 factors, finest first; got {scales}")
        self.scales = scales
        self.neck = nn.ModuleList(_rescale(embed_dim, s) for s in scales)
        # smp's decoder expects (depth + 1) encoder maps at strides 1, 2, 4, ... and ignores the
        # first two; our pyramid fills the rest.
        self.decoder = UPerNetDecoder(
            encoder_channels=[embed_dim] * (num_features + 2),
            encoder_depth=num_features + 1,
            decoder_channels=channels,
        )
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_outputs, kernel_size=1)

    def forward(
        self, features: Sequence[torch.Tensor], output_size: tuple[int, int]
    ) -> torch.Tensor:
        """``[B, K, *output_size]`` from ``num_features`` maps ``[B, D, h, w]``."""
        if len(features) != len(self.neck):
            raise ValueError(f"UPerNetHead expects {len(self.neck)} maps, got {len(features)}")
        pyramid = [rescale(x) for rescale, x in zip(self.neck, features, strict=True)]
        fused = self.decoder([pyramid[0], pyramid[0], *pyramid])  # [B, C, 4h, 4w] for scale 4
        return _resize(self.classifier(self.dropout(fused)), output_size)

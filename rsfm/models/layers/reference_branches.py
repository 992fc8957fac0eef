"""Reference-branch building blocks of CRefDiff: feature pyramids, windowed local
cross-attention, global query tokens and the strength-mixing attention processor."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn


def _groups(channels: int) -> int:
    """Largest GroupNorm group count <= 8 dividing ``channels``."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class FeaturePyramid(nn.Module):
    """Small conv pyramid: one feature map per UNet level (stride 1, 2, 4 ...).

    Args:
        in_channels: Input bands.
        channels: Output channels per level (the UNet's ``block_out_channels``).
    """

    def __init__(self, in_channels: int, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, padding=1),
            nn.GroupNorm(_groups(channels[0]), channels[0]),
            nn.SiLU(),
            nn.Conv2d(channels[0], channels[0], 3, padding=1),
        )
        self.downs = nn.ModuleList(
            nn.Sequential(
                nn.SiLU(),
                nn.Conv2d(c_in, c_out, 3, stride=2, padding=1),
                nn.GroupNorm(_groups(c_out), c_out),
                nn.SiLU(),
                nn.Conv2d(c_out, c_out, 3, padding=1),
            )
            for c_in, c_out in zip(channels[:-1], channels[1:], strict=True)
        )

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, H, W]`` -> ``[[B, c0, H, W], [B, c1, H/2, W/2], ...]``."""
        features = [self.stem(image)]
        for down in self.downs:
            features.append(down(features[-1]))
        return features


class WindowCrossAttention(nn.Module):
    """Cross-attention from LR features to reference features inside local windows.

    Each ``window x window`` block of LR queries attends to the reference keys of the same
    block enlarged by ``halo`` pixels on every side (so small misregistrations are reachable).

    Args:
        dim: Feature channels.
        heads: Attention heads.
        window: Window side in pixels of this level.
        halo: Extra reference pixels around each window.
    """

    def __init__(self, dim: int, heads: int, window: int, halo: int) -> None:
        super().__init__()
        self.window, self.halo = window, halo
        self.norm_q = nn.GroupNorm(_groups(dim), dim)
        self.norm_kv = nn.GroupNorm(_groups(dim), dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """``query``, ``reference`` ``[B, D, h, w]`` -> attended reference ``[B, D, h, w]``."""
        batch, dim, height, width = query.shape
        win, halo = min(self.window, height, width), self.halo
        pad_h, pad_w = (-height) % win, (-width) % win
        q = F.pad(self.norm_q(query), (0, pad_w, 0, pad_h))
        kv = F.pad(self.norm_kv(reference), (halo, halo + pad_w, halo, halo + pad_h))
        rows, cols = q.shape[-2] // win, q.shape[-1] // win
        # [B, D, rows*win, cols*win] -> [B*rows*cols, win*win, D]
        q = q.reshape(batch, dim, rows, win, cols, win).permute(0, 2, 4, 3, 5, 1)
        q = q.reshape(-1, win * win, dim)
        # Overlapping key windows: F.unfold extracts them without a Python loop.
        span = win + 2 * halo
        kv = F.unfold(kv, kernel_size=span, stride=win)  # [B, D*span*span, rows*cols]
        kv = kv.reshape(batch, dim, span * span, rows * cols).permute(0, 3, 2, 1)
        kv = kv.reshape(-1, span * span, dim)
        out, _ = self.attention(q, kv, kv, need_weights=False)
        out = out.reshape(batch, rows, cols, win, win, dim).permute(0, 5, 1, 3, 2, 4)
        out = out.reshape(batch, dim, rows * win, cols * win)
        return out[:, :, :height, :width]


class LocalBranch(nn.Module):
    """One pyramid level of the local branch: attend, gate by a learned gate and similarity.

    Args:
        dim: Feature channels of the level.
        heads: Attention heads.
        window: Window side.
        halo: Reference halo around each window.
    """

    def __init__(self, dim: int, heads: int, window: int, halo: int) -> None:
        super().__init__()
        self.attend = WindowCrossAttention(dim, heads, window, halo)
        self.gate = nn.Sequential(
            nn.Conv2d(2 * dim, dim, 3, padding=1), nn.SiLU(), nn.Conv2d(dim, 1, 1)
        )
        self.value = nn.Conv2d(dim, dim, 1)

    def forward(
        self, lr_features: torch.Tensor, ref_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gated reference features ``[B, D, h, w]`` and the gate map ``[B, 1, h, w]``."""
        attended = self.attend(lr_features, ref_features)
        similarity = (F.cosine_similarity(lr_features, attended, dim=1, eps=1e-6) + 1) / 2
        learned = torch.sigmoid(self.gate(torch.cat([lr_features, attended], dim=1)))
        gate = learned * similarity[:, None]
        return gate * self.value(attended), gate


class GlobalQueryTokens(nn.Module):
    """Reference features -> a fixed set of learned query tokens (cross-attention context).

    Args:
        in_channels: Channels of the reference features.
        dim: Token width (the UNet's ``cross_attention_dim``).
        num_tokens: Number of query tokens.
        heads: Attention heads.
    """

    def __init__(self, in_channels: int, dim: int, num_tokens: int, heads: int) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_tokens, dim) * 0.02)
        self.project = nn.Linear(in_channels, dim)
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, D_in, h, w]`` -> tokens ``[B, num_tokens, dim]``."""
        keys = self.project(features.flatten(2).transpose(1, 2))
        queries = self.queries.expand(features.shape[0], -1, -1)
        tokens, _ = self.attention(queries, keys, keys, need_weights=False)
        return self.norm(tokens + queries)


class StrengthCrossAttnProcessor:
    """diffusers attention processor mixing reference and null contexts by a strength map.

    Cross-attention layers return ``attn(x, null) + s * (attn(x, ref) - attn(x, null))`` with
    ``s`` the strength map pooled to the layer's grid; self-attention is unchanged. Receives
    ``null_context`` and ``strength`` through the UNet's ``cross_attention_kwargs``.
    """

    def __init__(self) -> None:
        self.inner = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        null_context: torch.Tensor | None = None,
        strength: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention output ``[B, N, C]`` (see the class docstring)."""
        if not attn.is_cross_attention or null_context is None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        base = self.inner(attn, hidden_states, null_context, attention_mask, temb)
        if strength is None or encoder_hidden_states is None:
            return base
        guided = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        full_h, full_w = strength.shape[-2:]
        factor = math.sqrt(full_h * full_w / hidden_states.shape[1])
        grid = (round(full_h / factor), round(full_w / factor))
        weight = F.adaptive_avg_pool2d(strength, grid).flatten(2).transpose(1, 2)  # [B, N, 1]
        return base + weight.to(base.dtype) * (guided - base)


__all__ = [
    "FeaturePyramid",
    "GlobalQueryTokens",
    "LocalBranch",
    "StrengthCrossAttnProcessor",
    "WindowCrossAttention",
]

"""SMARTIES-style spectrum-aware multi-sensor encoder and masked autoencoder.

The encoder embeds any band set with :class:`~rsfm.models.layers.spectral.SpectralPatchEmbed` (one
projection per spectral range, averaged over bands), adds fixed 2-D sin-cos position embeddings
for the input's patch grid, and runs timm ViT blocks. The masked autoencoder (MAE, He et al.
2022) reconstructs every band of the masked patches with the head of the band's spectral range,
and optionally mixes tokens between two co-registered sensors (cross-sensor token mixup,
Sumbul et al. 2025).

Structure follows MAE's ``models_mae.py``: ``forward_encoder -> forward_decoder ->
forward_loss``. Variants are registered once, below, with :func:`register_model`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import build_sincos2d_pos_embed
from timm.models import checkpoint_seq
from timm.models.vision_transformer import Block
from torch import nn

from rsfm.models.layers.spectral import (
    SpectralPatchEmbed,
    SpectralRange,
    band_ranges_for_batch,
    patchify,
)
from rsfm.models.registry import register_model, register_to_config

_norm_layer = functools.partial(nn.LayerNorm, eps=1e-6)


def sincos_pos_embed_2d(
    grid_size: tuple[int, int], dim: int, device: torch.device | None = None
) -> torch.Tensor:
    """Fixed 2-D sin-cos position embeddings in MAE's layout.

    Args:
        grid_size: Patch grid (rows, columns).
        dim: Embedding dimension (a multiple of 4).
        device: Device of the result.

    Returns:
        [rows*cols, dim] float32, tokens in row-major order; the first half of the channels
        encodes the column, the second half the row (sin then cos in each), as MAE/SMARTIES do.
    """
    emb = build_sincos2d_pos_embed(list(grid_size), dim, interleave_sin_cos=True, device=device)
    # timm puts the row first; swap halves so converted MAE/SMARTIES checkpoints stay valid.
    return torch.cat([emb[:, dim // 2 :], emb[:, : dim // 2]], dim=1)


class _PositionCache:
    """Sin-cos position embeddings cached per (grid, device, dtype); not part of the state."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._cache: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    def __call__(self, grid_size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        key = (grid_size[0], grid_size[1], like.device, like.dtype)
        if key not in self._cache:
            emb = sincos_pos_embed_2d(grid_size, self.dim, device=like.device)
            self._cache[key] = emb.to(like.dtype).unsqueeze(0)  # [1, N, dim]
        return self._cache[key]


def _init_vit_weights(module: nn.Module) -> None:
    """MAE initialisation: xavier-uniform linears (as official JAX ViT), unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _ranges_arg(ranges: Sequence[SpectralRange]) -> list[list[str | float]]:
    """A resolved range table as JSON-ready rows, so configs rebuild the exact parameters."""
    return [[r.name, r.min_nm, r.max_nm] for r in ranges]


def _blocks(
    dim: int, depth: int, num_heads: int, mlp_ratio: float, drop_path: float = 0.0
) -> nn.Sequential:
    # Stochastic depth rises linearly over blocks; plain floats so meta-device builds work.
    rates = [drop_path * i / max(depth - 1, 1) for i in range(depth)]
    return nn.Sequential(
        *[
            Block(dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=_norm_layer, drop_path=r)
            for r in rates
        ]
    )


class SmartiesEncoder(nn.Module):
    """Spectrum-aware ViT encoder for any band set and any multiple of the patch size.

    Args:
        img_size: Nominal input size (recorded for configs and cards; any multiple of
            ``patch_size`` works because position embeddings are computed per grid).
        patch_size: Patch side p.
        embed_dim: Token dimension D.
        depth: Number of transformer blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden size / D.
        projection_scale: Factor on the band-averaged patch embedding (SMARTIES: 12).
        ranges: Spectral range table rows ``(name, min_nm, max_nm)``; None = default table.
        drop_path_rate: Stochastic depth, linearly increasing over blocks (for fine-tuning).
    """

    @register_to_config
    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        projection_scale: float = 12.0,
        ranges: Sequence[SpectralRange | Sequence[str | float]] | None = None,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_embed = SpectralPatchEmbed(patch_size, embed_dim, ranges, projection_scale)
        self.init_args["ranges"] = _ranges_arg(self.patch_embed.ranges)  # None -> the table
        self.img_size = img_size
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = _blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path_rate)
        self.norm = _norm_layer(embed_dim)
        self.grad_checkpointing = False
        self._pos_embed = _PositionCache(embed_dim)
        nn.init.normal_(self.cls_token, std=0.02)
        self.blocks.apply(_init_vit_weights)
        self.norm.apply(_init_vit_weights)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in the backward pass to save memory."""
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers should not decay."""
        return {"cls_token"}

    def position_embedding(self, grid_size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """Fixed sin-cos embeddings [1, N, D] for a patch grid (cached)."""
        return self._pos_embed(grid_size, like)

    def grid_size(self, image: torch.Tensor) -> tuple[int, int]:
        """Patch grid (rows, cols) of an image [B, C, H, W]."""
        return image.shape[-2] // self.patch_size, image.shape[-1] // self.patch_size

    def embed(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Patch tokens with position embeddings, no cls token: [B, N, D]."""
        tokens = self.patch_embed(image, wavelengths)  # [B, N, D]
        return tokens + self.position_embedding(self.grid_size(image), tokens)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend the cls token and run the blocks: [B, L, D] -> [B, 1+L, D] (normalised)."""
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # cls has no position (MAE)
        x = torch.cat([cls, tokens], dim=1)
        if self.grad_checkpointing and torch.is_grad_enabled():
            x = checkpoint_seq(self.blocks, x)
        else:
            x = self.blocks(x)
        return self.norm(x)

    def forward_features(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Normalised tokens [B, 1+N, D] (cls first).

        Args:
            image: [B, C, H, W], H and W multiples of the patch size.
            wavelengths: [C] or [B, C] centre wavelengths in nm (NaN = padded band).
        """
        return self.encode_tokens(self.embed(image, wavelengths))

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`forward_features`: [B, 1+N, D]."""
        return self.forward_features(image, wavelengths)

    def forward_spatial(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Patch tokens as a feature map for dense heads: [B, D, H/p, W/p]."""
        rows, cols = self.grid_size(image)
        tokens = self.forward_features(image, wavelengths)[:, 1:]  # [B, N, D]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], self.embed_dim, rows, cols)

    def forward_pooled(
        self, image: torch.Tensor, wavelengths: torch.Tensor, pool: str = "cls"
    ) -> torch.Tensor:
        """One vector per image [B, D]: the cls token (``pool="cls"``) or the patch mean."""
        if pool not in ("cls", "avg"):
            raise ValueError(f"unknown pool {pool!r}; expected 'cls' or 'avg'")
        tokens = self.forward_features(image, wavelengths)
        return tokens[:, 0] if pool == "cls" else tokens[:, 1:].mean(dim=1)


class SmartiesMAE(nn.Module):
    """Spectrum-aware masked autoencoder with per-range heads and cross-sensor token mixup.

    Args:
        img_size: Nominal input size (any multiple of ``patch_size`` works).
        patch_size: Patch side p.
        embed_dim: Encoder dimension D.
        depth: Encoder blocks.
        num_heads: Encoder attention heads.
        decoder_embed_dim: Decoder dimension Dd.
        decoder_depth: Decoder blocks.
        decoder_num_heads: Decoder attention heads.
        mlp_ratio: MLP hidden size / dimension (encoder and decoder).
        mask_ratio: Fraction of patch tokens masked.
        norm_pix_loss: Normalise each target patch (per band) to zero mean, unit variance.
        mixup_ratio: Fraction of token positions swapped between paired sensors.
        projection_scale: Factor on the band-averaged patch embedding.
        ranges: Spectral range table rows; None = default table.
    """

    @register_to_config
    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        mixup_ratio: float = 0.5,
        projection_scale: float = 12.0,
        ranges: Sequence[SpectralRange | Sequence[str | float]] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
        if not 0.0 <= mixup_ratio <= 1.0:
            raise ValueError(f"mixup_ratio must be in [0, 1], got {mixup_ratio}")
        self.encoder = SmartiesEncoder(
            img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio, projection_scale, ranges
        )
        ranges_table = self.encoder.patch_embed.ranges
        self.init_args["ranges"] = _ranges_arg(ranges_table)  # None -> the resolved table
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.mixup_ratio = mixup_ratio

        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_blocks = _blocks(
            decoder_embed_dim, decoder_depth, decoder_num_heads, mlp_ratio
        )
        self.decoder_norm = _norm_layer(decoder_embed_dim)
        # Per-range reconstruction heads: band c is predicted by head [range(c)] (Dd -> p*p).
        num_pixels = patch_size * patch_size
        self.decoder_pred_weight = nn.Parameter(
            torch.empty(len(ranges_table), decoder_embed_dim, num_pixels)
        )
        self.decoder_pred_bias = nn.Parameter(torch.zeros(len(ranges_table), num_pixels))
        self._decoder_pos_embed = _PositionCache(decoder_embed_dim)
        self._init_decoder()

    def _init_decoder(self) -> None:
        nn.init.normal_(self.mask_token, std=0.02)
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm):
            module.apply(_init_vit_weights)
        with torch.no_grad():
            for r in range(self.decoder_pred_weight.shape[0]):
                nn.init.xavier_uniform_(self.decoder_pred_weight[r])
            self.decoder_pred_bias.zero_()

    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers should not decay."""
        return {"encoder.cls_token", "mask_token"}

    # ------------------------------------------------------------------ random draws
    @staticmethod
    def _noise(shape: tuple[int, int], device: torch.device, generator: torch.Generator | None):
        """Uniform noise drawn on the generator's device (so a CPU generator works on GPU)."""
        draw_device = generator.device if generator is not None else device
        return torch.rand(shape, generator=generator, device=draw_device).to(device)

    def random_masking(
        self,
        batch_size: int,
        num_tokens: int,
        mask_ratio: float,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample random masking of exactly ``num_tokens - int(num_tokens*(1-ratio))``.

        Returns:
            ids_keep [B, K] (visible token indices), mask [B, N] (1 = masked, 0 = visible),
            ids_restore [B, N] (undoes the shuffle).
        """
        num_keep = int(num_tokens * (1 - mask_ratio))
        noise = self._noise((batch_size, num_tokens), device, generator)  # [B, N]
        ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :num_keep]
        mask = torch.ones(batch_size, num_tokens, device=device)
        mask[:, :num_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # back to token order
        return ids_keep, mask, ids_restore

    def token_swap(
        self,
        batch_size: int,
        num_tokens: int,
        mixup_ratio: float,
        device: torch.device,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Positions whose tokens are swapped between the paired views: bool [B, N].

        Exactly ``num_tokens - int(num_tokens*(1-ratio))`` positions per sample (as SMARTIES).
        """
        num_kept = int(num_tokens * (1 - mixup_ratio))
        noise = self._noise((batch_size, num_tokens), device, generator)
        rank = torch.argsort(torch.argsort(noise, dim=1), dim=1)  # rank of each position
        return rank >= num_kept

    # ------------------------------------------------------------------ MAE stages
    def prepare_view(
        self, image: torch.Tensor, wavelengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cut, route and embed one sensor's image.

        Returns:
            patches [B, N, C, p*p], band_range [B, C] (-1 = padded band), tokens [B, N, D]
            with position embeddings.
        """
        patches = patchify(image, self.patch_size)  # [B, N, C, p*p]
        band_range = band_ranges_for_batch(
            wavelengths.to(image.device),
            image.shape[0],
            image.shape[1],
            self.encoder.patch_embed.ranges,
        )
        tokens = self.encoder.patch_embed.embed_patches(patches, band_range)  # [B, N, D]
        tokens = tokens + self.encoder.position_embedding(self.encoder.grid_size(image), tokens)
        return patches, band_range, tokens

    def forward_encoder(self, tokens: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """Encode the visible tokens.

        Args:
            tokens: [S, N, D] patch tokens with position embeddings.
            ids_keep: [S, K] indices of visible tokens.

        Returns:
            Latent [S, 1+K, D] (cls first).
        """
        dim = tokens.shape[-1]
        visible = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, dim))  # [S, K, D]
        return self.encoder.encode_tokens(visible)

    def forward_decoder(
        self, latent: torch.Tensor, ids_restore: torch.Tensor, grid_size: tuple[int, int]
    ) -> torch.Tensor:
        """Decode to one vector per token position.

        Args:
            latent: [S, 1+K, D].
            ids_restore: [S, N].
            grid_size: Patch grid (rows, cols).

        Returns:
            [S, N, Dd] decoder outputs for every patch position (cls dropped).
        """
        x = self.decoder_embed(latent)  # [S, 1+K, Dd]
        num_masked = ids_restore.shape[1] + 1 - x.shape[1]
        mask_tokens = self.mask_token.expand(x.shape[0], num_masked, -1)
        x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)  # [S, N, Dd], shuffled order
        index = ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        x_ = torch.gather(x_, 1, index)  # unshuffle to token order
        x_ = x_ + self._decoder_pos_embed(grid_size, x_)
        x = torch.cat([x[:, :1], x_], dim=1)  # [S, 1+N, Dd]
        x = self.decoder_norm(self.decoder_blocks(x))
        return x[:, 1:]

    def predict_bands(self, decoded: torch.Tensor, band_range: torch.Tensor) -> torch.Tensor:
        """Reconstruct each band with its range's head.

        Args:
            decoded: [B, N, Dd].
            band_range: [B, C] (-1 = padded band).

        Returns:
            [B, N, C, p*p]; padded bands are 0.
        """
        used, slot = torch.unique(band_range.clamp(min=0), return_inverse=True)  # [U], [B, C]
        per_range = torch.einsum("bnd,udp->bnup", decoded, self.decoder_pred_weight[used])
        per_range = per_range + self.decoder_pred_bias[used]  # [B, N, U, p*p]
        batch_index = torch.arange(decoded.shape[0], device=decoded.device).unsqueeze(1)
        pred = per_range[batch_index, :, slot].transpose(1, 2)  # [B, C, N, pp] -> [B, N, C, pp]
        return pred.masked_fill((band_range < 0)[:, None, :, None], 0.0)

    def forward_loss(
        self,
        pred: torch.Tensor,
        patches: torch.Tensor,
        band_range: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared error on masked patches, averaged over valid bands.

        Args:
            pred: [B, N, C, p*p].
            patches: [B, N, C, p*p] input pixels.
            band_range: [B, C] (-1 = padded band, excluded).
            mask: [B, N], 1 = masked (scored), 0 = visible (ignored).

        Returns:
            (scalar loss, target [B, N, C, p*p] as scored, i.e. normalised if norm_pix_loss).
        """
        valid = band_range >= 0  # [B, C]
        target = patches.masked_fill(~valid[:, None, :, None], 0.0)
        if self.norm_pix_loss:  # per patch, per band
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        error = (pred - target).pow(2).mean(dim=-1)  # [B, N, C]
        error = error.masked_fill(~valid[:, None, :], 0.0)
        token_loss = error.sum(-1) / valid.sum(-1, keepdim=True).clamp(min=1)  # [B, N]
        loss = (token_loss * mask).sum() / mask.sum().clamp(min=1)
        return loss, target

    def forward(
        self,
        image: torch.Tensor,
        wavelengths: torch.Tensor,
        pair_image: torch.Tensor | None = None,
        pair_wavelengths: torch.Tensor | None = None,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
        mixup_ratio: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """Masked reconstruction of one sensor, or of two co-registered sensors with mixup.

        Args:
            image: [B, C, H, W].
            wavelengths: [C] or [B, C] in nm (NaN = padded band).
            pair_image: Optional second sensor on the same grid, [B, C2, H, W].
            pair_wavelengths: [C2] or [B, C2], required with ``pair_image``.
            mask_ratio: Overrides the model's mask ratio.
            generator: Random generator for masking and mixup (reproducible runs).
            mixup_ratio: Overrides the model's mixup ratio.

        Returns:
            ``loss`` (scalar), ``pred`` / ``target`` [B, N, C, p*p] (reconstruction of
            ``image``'s bands, normalised pixels if norm_pix_loss), ``mask`` [B, N] (1 = masked),
            ``band_valid`` [B, C]. With a pair also ``loss_view1``, ``loss_view2``
            (loss = their mean), ``pred_pair``, ``target_pair``, ``band_valid_pair`` and
            ``swap`` [B, N] (True where the two sensors' tokens were exchanged).
        """
        mask_ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        patches, band_range, tokens = self.prepare_view(image, wavelengths)
        batch_size, num_tokens, _ = tokens.shape
        grid = self.encoder.grid_size(image)
        ids_keep, mask, ids_restore = self.random_masking(
            batch_size, num_tokens, mask_ratio, tokens.device, generator
        )
        if pair_image is None:
            latent = self.forward_encoder(tokens, ids_keep)  # [B, 1+K, D]
            decoded = self.forward_decoder(latent, ids_restore, grid)  # [B, N, Dd]
            pred = self.predict_bands(decoded, band_range)  # [B, N, C, p*p]
            loss, target = self.forward_loss(pred, patches, band_range, mask)
            return {
                "loss": loss,
                "pred": pred,
                "target": target,
                "mask": mask,
                "band_valid": band_range >= 0,
            }

        if pair_wavelengths is None:
            raise ValueError("pair_image needs pair_wavelengths")
        if pair_image.shape[0] != image.shape[0] or pair_image.shape[-2:] != image.shape[-2:]:
            raise ValueError(
                f"pair_image {tuple(pair_image.shape)} must share batch size and H x W with "
                f"image {tuple(image.shape)} (co-registered sensors on one grid)"
            )
        mixup_ratio = self.mixup_ratio if mixup_ratio is None else mixup_ratio
        patches2, band_range2, tokens2 = self.prepare_view(pair_image, pair_wavelengths)
        swap = self.token_swap(batch_size, num_tokens, mixup_ratio, tokens.device, generator)
        swap_ = swap.unsqueeze(-1)  # [B, N, 1]
        stream1 = torch.where(swap_, tokens2, tokens)  # mostly sensor 1, swapped tokens from 2
        stream2 = torch.where(swap_, tokens, tokens2)
        streams = torch.cat([stream1, stream2], dim=0)  # [2B, N, D], one pass for both
        latent = self.forward_encoder(streams, ids_keep.repeat(2, 1))  # same mask on both
        decoded1, decoded2 = self.forward_decoder(latent, ids_restore.repeat(2, 1), grid).chunk(2)
        # Swap back: at each position take the stream that carried that sensor's token, so each
        # sensor's bands are reconstructed by its own range heads against its own targets.
        # Since both streams share one mask, 0.5 * (loss on stream 1 + loss on stream 2) equals
        # 0.5 * (loss on sensor 1 + loss on sensor 2) computed this way.
        decoded_view1 = torch.where(swap_, decoded2, decoded1)  # [B, N, Dd]
        decoded_view2 = torch.where(swap_, decoded1, decoded2)
        pred1 = self.predict_bands(decoded_view1, band_range)
        pred2 = self.predict_bands(decoded_view2, band_range2)
        loss1, target1 = self.forward_loss(pred1, patches, band_range, mask)
        loss2, target2 = self.forward_loss(pred2, patches2, band_range2, mask)
        return {
            "loss": 0.5 * (loss1 + loss2),
            "loss_view1": loss1,
            "loss_view2": loss2,
            "pred": pred1,
            "target": target1,
            "pred_pair": pred2,
            "target_pair": target2,
            "mask": mask,
            "swap": swap,
            "band_valid": band_range >= 0,
            "band_valid_pair": band_range2 >= 0,
        }


# ---------------------------------------------------------------------- registered variants
def _smarties_mae(defaults: dict[str, Any], overrides: dict[str, Any]) -> SmartiesMAE:
    return SmartiesMAE(**{**defaults, **overrides})


@register_model
def smarties_tiny(**overrides: Any) -> SmartiesMAE:
    """Test-size MAE: patch 8, 64-d x 2 blocks, decoder 32-d x 1 block, 32 px input."""
    defaults = dict(
        img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=4,
        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4,
    )  # fmt: skip
    return _smarties_mae(defaults, overrides)


@register_model
def smarties_small(**overrides: Any) -> SmartiesMAE:
    """ViT-S/16 encoder (384-d, 12 blocks, 6 heads), decoder 256-d x 4 blocks, 8 heads."""
    defaults = dict(
        img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6,
        decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8,
    )  # fmt: skip
    return _smarties_mae(defaults, overrides)


@register_model
def smarties_base(**overrides: Any) -> SmartiesMAE:
    """ViT-B/16 encoder, decoder 512-d x 8 blocks, 16 heads (SMARTIES-B)."""
    defaults = dict(
        img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12,
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
    )  # fmt: skip
    return _smarties_mae(defaults, overrides)


@register_model
def smarties_large(**overrides: Any) -> SmartiesMAE:
    """ViT-L/16 encoder (1024-d, 24 blocks, 16 heads), decoder 512-d x 8 blocks (SMARTIES-L)."""
    defaults = dict(
        img_size=224, patch_size=16, embed_dim=1024, depth=24, num_heads=16,
        decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16,
    )  # fmt: skip
    return _smarties_mae(defaults, overrides)

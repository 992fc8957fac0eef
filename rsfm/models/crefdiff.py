"""Reference-guided super-resolution diffusion (CRefDiff-style) on diffusers components.

Data flow (``B`` batch, ``C`` bands, ``H x W`` the high-resolution grid)::

    lr [B,C,h,w] ──bicubic──▶ lr_up [B,C,H,W] ─┬─▶ concat with noisy residual ─▶ UNet ─▶ x0/eps/v
                                               └─▶ LR pyramid ──┐ (queries)
    reference [B,Cr,H,W] ──▶ reference pyramid ──▶ local branch: windowed cross-attention LR→ref,
                                 │                 × learned gate × (cos+1)/2 similarity,
                                 │                 zero-init 1x1 convs ─▶ adapter residuals,
                                 │                 level-0 gate x reference ─▶ extra UNet input
                                 │                 (UNet ``down_block_additional_residuals`` /
                                 │                 ``mid_block_additional_residual``)
                                 └─▶ global branch: learned queries attend to the coarsest
                                     reference features ─▶ tokens = cross-attention context

The diffusion runs on the residual ``(hr - lr_up) * residual_scale`` (SRDiff), so "no detail"
is the zero image. **Reference strength** ``s`` (a scalar or a per-pixel map ``[B,1,H,W]``)
multiplies the local residuals and mixes each cross-attention output between the reference
tokens and learned *null* tokens (``null + s * (ref - null)``); at ``s = 0`` no reference value
reaches the UNet, so the output is exactly independent of the reference. Setting
``use_local = use_global = False`` gives the reference-free SRDiff baseline with the same UNet.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, UNet2DConditionModel
from torch import nn

from rsfm.models.layers.diffusion import (
    diffusion_loss,
    make_scheduler,
    min_snr_weights,
    sampling_scheduler,
    training_target,
)
from rsfm.models.layers.reference_branches import (
    FeaturePyramid,
    GlobalQueryTokens,
    LocalBranch,
    StrengthCrossAttnProcessor,
    WindowCrossAttention,
    _groups,
)
from rsfm.models.registry import register_model, register_to_config

Strength = float | torch.Tensor | None
PREDICTION_TYPES = ("sample", "epsilon", "v_prediction")
START_MODES = ("noise", "lr", "reference")


class CRefDiffModel(nn.Module):
    """Reference-guided diffusion super-resolution network (see the module docstring).

    Args:
        in_channels: Bands of the LR input and the HR output.
        ref_channels: Bands of the reference (None: ``in_channels``).
        scale: Default upscaling factor (recorded for cards and the CLI; the network itself
            works at any factor because it sees the bicubic-upsampled LR).
        block_out_channels: UNet channels per level (also the pyramids').
        layers_per_block: ResNet layers per UNet block.
        cross_attention_dim: Width of the global tokens.
        attention_head_dim: Channels per attention head in the UNet.
        num_query_tokens: Learned query tokens of the global branch.
        window_size: Local-attention window at full resolution (halved per level, >= 2).
        halo: Reference halo (pixels) around each window, per level.
        use_local: Enable the local branch.
        use_global: Enable the global branch.
        prediction_type: ``sample`` (x0), ``epsilon`` or ``v_prediction``.
        num_train_timesteps: Diffusion steps of the training schedule.
        beta_schedule: diffusers beta schedule name.
        residual_scale: Multiplier of the HR-minus-bicubic residual the diffusion runs on.
        only_cross_attention: UNet transformer blocks without self-attention (cheap on CPU).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        ref_channels: int | None = None,
        scale: int = 4,
        block_out_channels: tuple[int, ...] | list[int] = (32, 64),
        layers_per_block: int = 1,
        cross_attention_dim: int = 64,
        attention_head_dim: int = 8,
        num_query_tokens: int = 8,
        window_size: int = 8,
        halo: int = 2,
        use_local: bool = True,
        use_global: bool = True,
        prediction_type: str = "sample",
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        residual_scale: float = 2.0,
        only_cross_attention: bool = False,
    ) -> None:
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}")
        channels = tuple(int(c) for c in block_out_channels)
        ref_channels = int(ref_channels or in_channels)
        # normalised: None -> the input's channels, plain ints per level
        self.init_args.update(ref_channels=ref_channels, block_out_channels=list(channels))
        self.in_channels, self.ref_channels, self.scale = in_channels, ref_channels, scale
        self.use_local, self.use_global = use_local, use_global
        self.prediction_type, self.residual_scale = prediction_type, residual_scale
        levels = len(channels)
        down = ("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (levels - 1)
        up = ("CrossAttnUpBlock2D",) * (levels - 1) + ("UpBlock2D",)
        self.unet = UNet2DConditionModel(
            sample_size=None,
            in_channels=2 * in_channels + (2 * ref_channels if use_local else 0),
            out_channels=in_channels,
            down_block_types=down,
            up_block_types=up,
            block_out_channels=channels,
            layers_per_block=layers_per_block,
            cross_attention_dim=cross_attention_dim,
            attention_head_dim=attention_head_dim,
            norm_num_groups=min(_groups(c) for c in channels),
            only_cross_attention=only_cross_attention,
        )
        self.unet.set_attn_processor(StrengthCrossAttnProcessor())
        self.null_tokens = nn.Parameter(torch.randn(num_query_tokens, cross_attention_dim) * 0.02)
        self.residual_levels = self._residual_levels(channels, layers_per_block)
        if use_local or use_global:
            self.ref_pyramid = FeaturePyramid(2 * ref_channels, channels)
        if use_local:
            self.lr_pyramid = FeaturePyramid(in_channels, channels)
            self.local = nn.ModuleList(
                LocalBranch(c, max(1, c // attention_head_dim), max(2, window_size >> i), halo)
                for i, c in enumerate(channels)
            )
            self.residual_convs = nn.ModuleList(
                nn.Conv2d(channels[level], out, 1) for level, out in self.residual_levels
            )
            self.to_mid = nn.Conv2d(channels[-1], channels[-1], 1)
            for conv in (*self.residual_convs, self.to_mid):  # ControlNet-style zero init
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        if use_global:
            self.global_tokens = GlobalQueryTokens(
                channels[-1],
                cross_attention_dim,
                num_query_tokens,
                max(1, cross_attention_dim // attention_head_dim),
            )
        self.train_scheduler = make_scheduler(
            "ddpm",
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            beta_start=1e-4,  # DDPM's own defaults (used by the "linear" schedules)
            beta_end=0.02,
            prediction_type=prediction_type,
            clip_sample=False,
        )

    @staticmethod
    def _residual_levels(channels: tuple[int, ...], layers: int) -> list[tuple[int, int]]:
        """(pyramid level, channels) of each UNet skip connection, in diffusers' order."""
        levels = [(0, channels[0])]  # conv_in
        for index, width in enumerate(channels):
            levels += [(index, width)] * layers
            if index < len(channels) - 1:
                levels.append((index + 1, width))  # the block's downsampler output
        return levels

    @property
    def uses_reference(self) -> bool:
        """Whether any reference branch is enabled."""
        return self.use_local or self.use_global

    # ------------------------------------------------------------------ conditioning
    def upsample(self, lr: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Bicubic upsampling of the LR image to the HR grid."""
        return F.interpolate(lr, size=size, mode="bicubic", align_corners=False)

    def strength_map(self, strength: Strength, like: torch.Tensor) -> torch.Tensor | None:
        """A scalar, ``[B]``, ``[H, W]``, ``[B, H, W]`` or ``[B, 1, H, W]`` strength -> map."""
        if strength is None:
            return None
        value = torch.as_tensor(strength, dtype=like.dtype, device=like.device)
        batch, _, height, width = like.shape
        if value.ndim == 0:
            value = value.expand(batch)
        if value.ndim == 1:
            value = value[:, None, None, None]
        elif value.ndim == 2:
            value = value[None, None]
        elif value.ndim == 3:
            value = value[:, None]
        value = value.expand(batch, 1, -1, -1)
        if value.shape[-2:] != (height, width):
            if value.shape[-2:] != (1, 1):
                value = F.interpolate(value, size=(height, width), mode="bilinear")
            value = value.expand(batch, 1, height, width)
        return torch.nan_to_num(value, nan=0.0)

    def reference_input(self, reference: torch.Tensor, scale: int) -> torch.Tensor:
        """The reference and its high-pass (reference minus its LR-like version): the detail
        to transfer, insensitive to the reference's colour and brightness offsets."""
        if scale <= 1:
            return torch.cat([reference, torch.zeros_like(reference)], dim=1)
        low = F.avg_pool2d(reference, scale, ceil_mode=True)
        low = self.upsample(low, reference.shape[-2:])
        return torch.cat([reference, reference - low], dim=1)

    def condition(
        self,
        lr_up: torch.Tensor,
        reference: torch.Tensor | None,
        strength: Strength = 1.0,
        scale: int | None = None,
    ) -> dict[str, Any]:
        """UNet conditioning that does not depend on the diffusion step (computed once).

        Args:
            lr_up: Bicubic-upsampled LR ``[B, C, H, W]``.
            reference: Reference on the HR grid ``[B, Cr, H, W]`` or None.
            strength: Reference strength (see :meth:`strength_map`).
            scale: Upscaling factor (default: the model's).

        Returns:
            ``down_block_additional_residuals``, ``mid_block_additional_residual``,
            ``encoder_hidden_states`` and ``cross_attention_kwargs`` for the UNet.
        """
        batch = lr_up.shape[0]
        null = self.null_tokens.expand(batch, -1, -1)
        plain: dict[str, Any] = {
            "encoder_hidden_states": null,
            "cross_attention_kwargs": {"null_context": null},
        }
        if self.use_local:  # no reference: the guidance input channels are zero
            shape = (batch, 2 * self.ref_channels, *lr_up.shape[-2:])
            plain["input_guidance"] = lr_up.new_zeros(shape)
        if not self.uses_reference or reference is None:
            return plain
        weight = self.strength_map(strength, lr_up)
        if weight is not None and not bool(weight.any()):
            return plain  # strength 0 everywhere: skip the branches (same output, faster)
        reference = torch.nan_to_num(reference, nan=0.0)
        scale = int(scale or self.scale)
        ref_input = self.reference_input(reference, scale)
        ref_features = self.ref_pyramid(ref_input)
        out: dict[str, Any] = dict(plain)
        if self.use_local:
            lr_features = self.lr_pyramid(lr_up)
            levels = [
                branch(lr_f, ref_f)
                for branch, lr_f, ref_f in zip(self.local, lr_features, ref_features, strict=True)
            ]
            gated = [features for features, _ in levels]
            guidance = levels[0][1] * ref_input  # full-resolution gate x reference (+ detail)
            if weight is not None:
                gated = [g * F.adaptive_avg_pool2d(weight, g.shape[-2:]) for g in gated]
                guidance = guidance * weight
            out["input_guidance"] = guidance
            out["down_block_additional_residuals"] = tuple(
                conv(gated[level])
                for conv, (level, _) in zip(self.residual_convs, self.residual_levels, strict=True)
            )
            out["mid_block_additional_residual"] = self.to_mid(gated[-1])
        if self.use_global:
            tokens = self.global_tokens(ref_features[-1])
            out["encoder_hidden_states"] = tokens
            ones = torch.ones_like(lr_up[:, :1])
            out["cross_attention_kwargs"] = {
                "null_context": null,
                "strength": ones if weight is None else weight,
            }
        return out

    def denoise(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        lr_up: torch.Tensor,
        condition: dict[str, Any],
    ) -> torch.Tensor:
        """One UNet evaluation: the model output (x0, eps or v per ``prediction_type``)."""
        residuals = condition.get("down_block_additional_residuals")
        inputs = [noisy, lr_up]
        if "input_guidance" in condition:
            inputs.append(condition["input_guidance"])
        return self.unet(
            torch.cat(inputs, dim=1),
            timesteps,
            encoder_hidden_states=condition["encoder_hidden_states"],
            cross_attention_kwargs=condition["cross_attention_kwargs"],
            down_block_additional_residuals=list(residuals) if residuals is not None else None,
            mid_block_additional_residual=condition.get("mid_block_additional_residual"),
        ).sample

    def forward(
        self,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        lr: torch.Tensor,
        reference: torch.Tensor | None = None,
        strength: Strength = 1.0,
    ) -> torch.Tensor:
        """Model output for noisy residuals ``[B, C, H, W]`` given LR ``[B, C, h, w]``."""
        lr_up = self.upsample(lr, noisy.shape[-2:])
        scale = noisy.shape[-1] // lr.shape[-1]
        condition = self.condition(lr_up, reference, strength, scale)
        return self.denoise(noisy, timesteps, lr_up, condition)

    # ------------------------------------------------------------------ training
    def to_residual(self, hr: torch.Tensor, lr_up: torch.Tensor) -> torch.Tensor:
        """HR image -> the diffusion's clean sample."""
        return (hr - lr_up) * self.residual_scale

    def from_residual(self, residual: torch.Tensor, lr_up: torch.Tensor) -> torch.Tensor:
        """The diffusion's clean sample -> HR image."""
        return lr_up + residual / self.residual_scale

    def training_loss(
        self,
        lr: torch.Tensor,
        hr: torch.Tensor,
        reference: torch.Tensor | None = None,
        strength: Strength = 1.0,
        valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        max_timestep_fraction: float = 1.0,
        snr_gamma: float | None = None,
    ) -> torch.Tensor:
        """Denoising loss (MSE on the ``prediction_type`` target, valid pixels only).

        ``max_timestep_fraction < 1`` trains only the low-noise end of the schedule, the part a
        better start samples (faster learning when sampling always starts from an estimate).
        ``snr_gamma`` weights samples by Min-SNR-gamma (None: plain MSE).
        """
        lr_up = self.upsample(lr, hr.shape[-2:])
        clean = self.to_residual(hr, lr_up)
        noise = torch.randn(
            clean.shape, generator=generator, device=clean.device, dtype=clean.dtype
        )
        steps = max(
            1, round(self.train_scheduler.config.num_train_timesteps * max_timestep_fraction)
        )
        timesteps = torch.randint(
            0, steps, (clean.shape[0],), generator=generator, device=clean.device
        )
        noisy = self.train_scheduler.add_noise(clean, noise, timesteps)
        condition = self.condition(lr_up, reference, strength, hr.shape[-1] // lr.shape[-1])
        output = self.denoise(noisy, timesteps, lr_up, condition)
        target = training_target(self.train_scheduler, clean, noise, timesteps)
        weights = None
        if snr_gamma is not None:
            weights = min_snr_weights(self.train_scheduler, timesteps, snr_gamma)
        return diffusion_loss(output, target, weights, valid)

    # ------------------------------------------------------------------ sampling
    def sampling_scheduler(self) -> DDIMScheduler:
        """A DDIM scheduler sharing the training schedule (deterministic with ``eta = 0``).

        DDIM only: the better start noises an estimate with ``add_noise`` at a DDPM timestep,
        which sigma-based samplers (Euler, DPM-SDE) would scale differently.
        """
        return sampling_scheduler(
            self.train_scheduler, "ddim", clip_sample=False, set_alpha_to_one=True
        )

    @torch.no_grad()
    def sample(
        self,
        lr: torch.Tensor,
        reference: torch.Tensor | None = None,
        strength: Strength = 1.0,
        steps: int = 20,
        start: str = "noise",
        start_fraction: float = 0.25,
        scale: int | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Super-resolve ``lr`` ``[B, C, h, w]`` -> ``[B, C, h*scale, w*scale]``.

        Args:
            lr: Normalised LR image.
            reference: Normalised reference on the HR grid ``[B, Cr, H, W]`` (None: no reference).
            strength: Reference strength: scalar, per-sample or per-pixel map.
            steps: DDIM steps over the full schedule (a "better start" runs only the last
                ``round(steps * start_fraction)`` of them, at least one).
            start: ``noise`` (pure noise, the full schedule), ``lr`` (noised bicubic estimate)
                or ``reference`` (noised reference, the better start of CRefDiff).
            start_fraction: Fraction of the schedule left when starting from an estimate.
            scale: Upscaling factor (default: the model's).
            generator: Random generator for the initial noise.
            noise: The initial noise ``[B, C, H, W]`` itself (overrides ``generator``).
        """
        if start not in START_MODES:
            raise ValueError(f"start must be one of {START_MODES}, got {start!r}")
        factor = int(scale or self.scale)
        size = (lr.shape[-2] * factor, lr.shape[-1] * factor)
        lr_up = self.upsample(lr, size)
        condition = self.condition(lr_up, reference, strength, factor)
        scheduler = self.sampling_scheduler()
        scheduler.set_timesteps(steps, device=lr.device)
        timesteps = scheduler.timesteps
        if noise is None:
            noise = torch.randn(lr_up.shape, generator=generator, device=lr.device, dtype=lr.dtype)
        if start == "noise":
            sample = noise * scheduler.init_noise_sigma
        else:
            keep = max(1, min(len(timesteps), round(len(timesteps) * start_fraction)))
            timesteps = timesteps[-keep:]
            estimate = torch.zeros_like(lr_up)
            if start == "reference" and reference is not None and reference.shape[1] == lr.shape[1]:
                estimate = self.to_residual(torch.nan_to_num(reference, nan=0.0), lr_up)
            sample = scheduler.add_noise(estimate, noise, timesteps[:1].repeat(lr.shape[0]))
        for t in timesteps:
            batch_t = t.repeat(lr.shape[0])
            output = self.denoise(scheduler.scale_model_input(sample, t), batch_t, lr_up, condition)
            sample = scheduler.step(output, t, sample, eta=0.0).prev_sample
        return self.from_residual(sample, lr_up)

    def example_inputs(self, batch_size: int = 2, lr_size: int = 8) -> dict[str, Any]:
        """Random forward inputs (for generic registry tests)."""
        side = lr_size * self.scale
        return {
            "noisy": torch.randn(batch_size, self.in_channels, side, side),
            "timesteps": torch.arange(batch_size) * 100,
            "lr": torch.randn(batch_size, self.in_channels, lr_size, lr_size),
            "reference": torch.randn(batch_size, self.ref_channels, side, side),
            "strength": 1.0,
        }

    def no_weight_decay(self) -> set[str]:
        """Parameter names that optimisers should not decay."""
        names = {"null_tokens"}
        if self.use_global:
            names.add("global_tokens.queries")
        return names


TINY_ARGS: dict[str, Any] = {
    "in_channels": 3, "scale": 4, "block_out_channels": (16, 32), "cross_attention_dim": 32,
    "attention_head_dim": 8, "num_query_tokens": 4, "window_size": 8, "halo": 2,
    "only_cross_attention": True,
}  # fmt: skip


@register_model
def crefdiff_tiny(**overrides: Any) -> CRefDiffModel:
    """Tiny CPU-trainable variant (x4, 3 bands, 16/32 channels)."""
    return CRefDiffModel(**{**TINY_ARGS, **overrides})


@register_model
def srdiff_tiny(**overrides: Any) -> CRefDiffModel:
    """``crefdiff_tiny`` without the reference branches (the reference-free baseline)."""
    return CRefDiffModel(**{**TINY_ARGS, "use_local": False, "use_global": False, **overrides})


@register_model
def crefdiff_x10(**overrides: Any) -> CRefDiffModel:
    """x10 variant (Sentinel-2 10 m RGB-NIR -> 1 m), three levels, wider windows."""
    args = {
        "in_channels": 4, "scale": 10, "block_out_channels": (64, 128, 256),
        "layers_per_block": 2, "cross_attention_dim": 256, "attention_head_dim": 32,
        "num_query_tokens": 16, "window_size": 16, "halo": 4,
    }  # fmt: skip
    return CRefDiffModel(**{**args, **overrides})


__all__ = [
    "CRefDiffModel",
    "FeaturePyramid",
    "GlobalQueryTokens",
    "LocalBranch",
    "StrengthCrossAttnProcessor",
    "WindowCrossAttention",
    "crefdiff_tiny",
    "crefdiff_x10",
    "srdiff_tiny",
]

"""Hyperspectral segmentation models (HyperspectralViTs-style) that take any optical band set.

Every model here maps ``(image [B, C, H, W], wavelengths [C] or [B, C]) -> logits [B, K, H, W]``:

- :class:`HyperSegFormer` (``hyperseg_tiny``): segmentation_models_pytorch's SegFormer with a
  ``mit_b0`` encoder (random init), changed as in HyperSegFormer (Ruzicka et al. 2024): a learned
  1x1 spectral-mixing convolution before each of the four patch embeddings, a first patch
  embedding with stride 2 instead of 4, and an upscaling block (nearest 2x, two 3x3 convs that
  halve the channels) before the classifier. With ``hyper=False`` it is the plain SegFormer
  (``segformer_tiny``: stride 4, no mixing, bilinear 4x upsampling of the logits).
- :class:`HyperEfficientViT` (``hyperefficientvit_tiny``): timm's ``efficientvit_b0`` features
  with a spectral-mixing input, a stride-1 stem and the same decoder + upscaling block.
- ``smarties_tiny_hsi_seg``: the project's spectrum-aware encoder (:class:`FineTuneModel` with a
  ``SmartiesEncoder``) on all bands, with a UPerNet head.

The band-facing layer is a :class:`WavelengthConv2d`: its weight for a band is interpolated from
learned weights on a fixed wavelength grid (350-2600 nm), so one model accepts EnMAP, EMIT, NEON
or a bad-band-free subset of any of them; for a fixed band set it is an ordinary convolution.
Wavelengths outside the grid (SAR, thermal) raise :class:`UnknownWavelengthError`.
"""

from __future__ import annotations

import math
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base.modules import Conv2dReLU
from segmentation_models_pytorch.decoders.segformer.decoder import SegformerDecoder
from segmentation_models_pytorch.encoders.mix_transformer import OverlapPatchEmbed
from torch import nn

from rsfm.models.finetune import FineTuneModel
from rsfm.models.layers.spectral import UnknownWavelengthError
from rsfm.models.registry import register_model, register_to_config

SPECTRAL_RANGE_NM = (350.0, 2600.0)


class WavelengthConv2d(nn.Module):
    """A convolution over bands whose per-band weights are a learned function of wavelength.

    Weights live on ``n`` grid wavelengths ``low, low + step, ..., high``; a band at wavelength
    ``w`` gets the linear interpolation of its two neighbouring grid weights. Outputs are scaled
    by ``1/sqrt(number of bands)`` so a model sees similar activations for 13 or 300 bands.
    Padded bands (NaN wavelength) contribute nothing.

    Args:
        out_channels: Output channels.
        kernel_size: Square kernel size (1 = spectral mixing).
        stride: Convolution stride.
        spectral_step_nm: Grid spacing in nm.
        spectral_range_nm: (low, high) of the grid in nm.
    """

    def __init__(
        self,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        spectral_step_nm: float = 5.0,
        spectral_range_nm: tuple[float, float] = SPECTRAL_RANGE_NM,
    ) -> None:
        super().__init__()
        self.low, self.high = float(spectral_range_nm[0]), float(spectral_range_nm[1])
        self.step = float(spectral_step_nm)
        nodes = int(round((self.high - self.low) / self.step)) + 1
        self.kernel_size, self.stride = int(kernel_size), int(stride)
        self.weight = nn.Parameter(torch.empty(out_channels, nodes, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        nn.init.normal_(self.weight, std=1.0 / kernel_size)

    def band_weights(self, wavelengths: torch.Tensor) -> torch.Tensor:
        """Convolution weight ``[out, C, k, k]`` for bands at ``wavelengths`` [C] (nm).

        Raises:
            UnknownWavelengthError: Naming wavelengths outside the grid.
        """
        waves = wavelengths.to(self.weight.device, torch.float32)
        padded = torch.isnan(waves)
        outside = ~padded & ((waves < self.low) | (waves > self.high))
        if bool(outside.any()):
            raise UnknownWavelengthError(
                f"band wavelength(s) {waves[outside].tolist()} nm are outside this model's "
                f"spectral range {self.low:.0f}-{self.high:.0f} nm (optical bands only)"
            )
        position = ((waves.nan_to_num(self.low) - self.low) / self.step).clamp(0.0, None)
        left = position.floor().long().clamp(max=self.weight.shape[1] - 2)
        frac = (position - left).to(self.weight.dtype)[None, :, None, None]
        weight = self.weight[:, left] * (1.0 - frac) + self.weight[:, left + 1] * frac
        weight = weight.masked_fill(padded[None, :, None, None], 0.0)
        count = max(1, int((~padded).sum()))
        return weight / math.sqrt(count)

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Convolve ``image`` [B, C, H, W]; ``wavelengths`` [C] or [B, C] (per-sample bands)."""
        if image.shape[1] != wavelengths.shape[-1]:
            raise ValueError(
                f"image has {image.shape[1]} bands but {wavelengths.shape[-1]} wavelengths"
            )
        padding = self.kernel_size // 2
        if wavelengths.ndim == 1 or bool((wavelengths == wavelengths[:1]).all()):
            weight = self.band_weights(wavelengths.reshape(-1, wavelengths.shape[-1])[0])
            return F.conv2d(image, weight.to(image.dtype), self.bias, self.stride, padding)
        outputs = [
            F.conv2d(x[None], self.band_weights(w).to(x.dtype), self.bias, self.stride, padding)
            for x, w in zip(image, wavelengths, strict=True)
        ]  # mixed sensors in one batch: one weight per sample
        return torch.cat(outputs)


def standardize_pixels(image: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Each pixel's spectrum minus its mean over bands, over its std (the spectral shape).

    Brightness (illumination, albedo) is the dominant, highly correlated direction of spectra;
    taking it out leaves absorption features that a 1x1 mixing learns in far fewer steps.
    """
    mean = image.mean(dim=1, keepdim=True)
    std = image.std(dim=1, keepdim=True, unbiased=False)
    return (image - mean) / (std + eps)


class UpscalingBlock(nn.Sequential):
    """Nearest 2x upsampling, then two 3x3 conv-BN-ReLU layers halving the channels."""

    def __init__(self, channels: int) -> None:
        half = max(1, channels // 2)
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            Conv2dReLU(channels, half, kernel_size=3, padding=1, use_norm="batchnorm"),
            Conv2dReLU(half, half, kernel_size=3, padding=1, use_norm="batchnorm"),
        )
        self.out_channels = half


class SpectralMixing(nn.Module):
    """The band-facing 1x1 spectral mixing: a :class:`WavelengthConv2d` over the bands, plus
    (``shape_channels``) a second one over each pixel's standardised spectrum, summed.

    Args:
        out_channels: Mixed channels.
        spectral_step_nm: Wavelength grid spacing.
        shape_channels: Add the spectral-shape path.
    """

    def __init__(self, out_channels: int, spectral_step_nm: float, shape_channels: bool) -> None:
        super().__init__()
        self.bands = WavelengthConv2d(out_channels, 1, 1, spectral_step_nm)
        self.shape = (
            WavelengthConv2d(out_channels, 1, 1, spectral_step_nm) if shape_channels else None
        )

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Mixed channels ``[B, out, H, W]``."""
        mixed = self.bands(image, wavelengths)
        if self.shape is not None:
            mixed = mixed + self.shape(standardize_pixels(image), wavelengths)
        return mixed


def _decode(decoder: SegformerDecoder, features: list[torch.Tensor]) -> torch.Tensor:
    """Run smp's SegFormer decoder on four feature maps, fused at the first one's resolution.

    The decoder resizes to a quarter of its first input's size; a zero-channel placeholder four
    times the size of the finest map keeps that resolution whatever the encoder's first stride.
    """
    first = features[0]
    placeholder = first.new_empty(first.shape[0], 0, 4 * first.shape[2], 4 * first.shape[3])
    empty = first.new_empty(first.shape[0], 0, 1, 1)
    return decoder([placeholder, empty, *features])


def _pad_to_multiple(image: torch.Tensor, multiple: int) -> tuple[torch.Tensor, int, int]:
    """Replicate-pad the bottom/right edges to a multiple of ``multiple``; return the sizes."""
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
    return image, height, width


class HyperSegFormer(nn.Module):
    """SegFormer (smp, ``mit_b*`` encoder) with or without the HyperSegFormer changes.

    Args:
        num_outputs: Classes K (2 for a binary plume model: background, plume).
        encoder: smp Mix Transformer name (``mit_b0`` ... ``mit_b5``), randomly initialised.
        hyper: Apply the HyperSegFormer changes (spectral mixing, stride 2, upscaling block).
        mixing_channels: Output channels of the first (band-facing) spectral mixing.
        decoder_channels: Channels of the SegFormer MLP decoder.
        spectral_step_nm: Wavelength grid spacing of the band-facing layer.
        shape_channels: Also feed each pixel's standardised spectrum (see
            :func:`standardize_pixels`) through its own mixing (hyper variants only).
    """

    @register_to_config
    def __init__(
        self,
        num_outputs: int = 2,
        encoder: str = "mit_b0",
        hyper: bool = True,
        mixing_channels: int = 32,
        decoder_channels: int = 128,
        spectral_step_nm: float = 5.0,
        shape_channels: bool = True,
    ) -> None:
        super().__init__()
        self.num_outputs = num_outputs
        self.hyper = hyper
        stem_channels = mixing_channels if hyper else 3
        self.encoder = smp.encoders.get_encoder(encoder, in_channels=3, depth=5, weights=None)
        dims = [c for c in self.encoder.out_channels[2:]]
        if hyper:
            # Band-facing 1x1 spectral mixing, then a stride-2 overlapping patch embedding.
            self.spectral = SpectralMixing(stem_channels, spectral_step_nm, shape_channels)
            self.encoder.patch_embed1 = OverlapPatchEmbed(
                patch_size=7, stride=2, in_chans=stem_channels, embed_dim=dims[0]
            )
            for stage in (2, 3, 4):  # 1x1 channel mixing before every later patch embedding
                embed = getattr(self.encoder, f"patch_embed{stage}")
                mixing = nn.Conv2d(dims[stage - 2], dims[stage - 2], kernel_size=1)
                setattr(self.encoder, f"patch_embed{stage}", nn.Sequential(mixing, embed))
            self.stride = 16
        else:
            # Plain SegFormer: the stride-4 7x7 patch embedding itself reads the bands.
            self.spectral = WavelengthConv2d(dims[0], 7, 4, spectral_step_nm)
            self.encoder.patch_embed1.proj = nn.Identity()
            self.stride = 32
        self.decoder = SegformerDecoder(
            encoder_channels=[stem_channels, 0, *dims],
            encoder_depth=5,
            segmentation_channels=decoder_channels,
        )
        self.upscale = UpscalingBlock(decoder_channels) if hyper else nn.Identity()
        head_in = self.upscale.out_channels if hyper else decoder_channels
        self.head = nn.Conv2d(head_in, num_outputs, kernel_size=1)

    @property
    def dense(self) -> bool:
        """Per-pixel outputs (as :class:`FineTuneModel` dense heads; used by ``rsfm tile``)."""
        return True

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K, H, W]`` for any H, W (edges are padded internally)."""
        padded, height, width = _pad_to_multiple(image, self.stride)
        x = self.spectral(padded, wavelengths)
        features = self.encoder(x)[2:]  # four stages: strides 2/4/8/16 (hyper) or 4/8/16/32
        fused = _decode(self.decoder, features)
        logits = self.head(self.upscale(fused))
        if logits.shape[-2:] != padded.shape[-2:]:
            logits = F.interpolate(
                logits, size=padded.shape[-2:], mode="bilinear", align_corners=False
            )
        return logits[..., :height, :width]


class HyperEfficientViT(nn.Module):
    """timm EfficientViT (MIT-Han-Lab ``efficientvit_b*``) features with the hyperspectral changes.

    A band-facing 1x1 spectral mixing, the backbone's stem with stride 1 instead of 2 (features at
    strides 2/4/8/16), the SegFormer MLP decoder on the four stages and the upscaling block.

    Args:
        num_outputs: Classes K.
        backbone: timm EfficientViT name (``efficientvit_b0`` or ``efficientvit_b1``).
        mixing_channels: Channels of the spectral mixing.
        decoder_channels: Channels of the MLP decoder.
        spectral_step_nm: Wavelength grid spacing of the band-facing layer.
        shape_channels: Also mix each pixel's standardised spectrum (:func:`standardize_pixels`).
    """

    @register_to_config
    def __init__(
        self,
        num_outputs: int = 2,
        backbone: str = "efficientvit_b0",
        mixing_channels: int = 32,
        decoder_channels: int = 128,
        spectral_step_nm: float = 5.0,
        shape_channels: bool = True,
    ) -> None:
        super().__init__()
        self.num_outputs = num_outputs
        self.spectral = SpectralMixing(mixing_channels, spectral_step_nm, shape_channels)
        self.backbone = timm.create_model(
            backbone, pretrained=False, features_only=True, in_chans=mixing_channels
        )
        stem = self.backbone.stem_in_conv.conv
        self.backbone.stem_in_conv.conv = nn.Conv2d(
            stem.in_channels, stem.out_channels, stem.kernel_size, 1, stem.padding, bias=False
        )
        channels = self.backbone.feature_info.channels()
        self.decoder = SegformerDecoder(
            encoder_channels=[mixing_channels, 0, *channels],
            encoder_depth=5,
            segmentation_channels=decoder_channels,
        )
        self.upscale = UpscalingBlock(decoder_channels)
        self.head = nn.Conv2d(self.upscale.out_channels, num_outputs, kernel_size=1)
        self.stride = 16

    @property
    def dense(self) -> bool:
        """Per-pixel outputs (used by ``rsfm tile``)."""
        return True

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K, H, W]`` for any H, W (edges are padded internally)."""
        padded, height, width = _pad_to_multiple(image, self.stride)
        features = self.backbone(self.spectral(padded, wavelengths))
        logits = self.head(self.upscale(_decode(self.decoder, features)))
        return logits[..., :height, :width]


# --------------------------------------------------------------------------- registered variants
@register_model
def hyperseg_tiny(**overrides: Any) -> HyperSegFormer:
    """HyperSegFormer on ``mit_b0`` (random init), 64-channel decoder, 2 classes (plume)."""
    defaults = dict(num_outputs=2, encoder="mit_b0", hyper=True, decoder_channels=64)
    return HyperSegFormer(**{**defaults, **overrides})


@register_model
def segformer_tiny(**overrides: Any) -> HyperSegFormer:
    """Plain SegFormer on ``mit_b0`` (no spectral changes): the baseline of ``hyperseg_tiny``."""
    defaults = dict(num_outputs=2, encoder="mit_b0", hyper=False, decoder_channels=64)
    return HyperSegFormer(**{**defaults, **overrides})


@register_model
def hyperefficientvit_tiny(**overrides: Any) -> HyperEfficientViT:
    """HyperEfficientViT on timm ``efficientvit_b0`` (random init), 64-channel decoder."""
    defaults = dict(num_outputs=2, backbone="efficientvit_b0", decoder_channels=64)
    return HyperEfficientViT(**{**defaults, **overrides})


@register_model
def smarties_tiny_hsi_seg(**overrides: Any) -> FineTuneModel:
    """The tiny spectrum-aware encoder on all bands + UPerNet head (32 channels), 2 classes."""
    defaults: dict[str, Any] = dict(
        backbone="smarties_tiny", head="upernet", num_outputs=2, head_args={"channels": 32}
    )
    return FineTuneModel(**{**defaults, **overrides})

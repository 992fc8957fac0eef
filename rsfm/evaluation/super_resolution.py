"""Super-resolution metrics: PSNR / SSIM (luminance and per band), LPIPS, a no-reference score.

Full-reference metrics come from torchmetrics. LPIPS needs torchvision backbone weights, which
cannot be downloaded here: :func:`lpips_available` looks for them in the torch hub cache and
:func:`lpips` returns None with :data:`LPIPS_SKIP_MESSAGE` otherwise. The no-reference score is
the *average gradient* (mean gradient magnitude of the luminance, a common sharpness measure in
remote-sensing SR) from torchmetrics' ``image_gradients``, reported with its ratio to the
target's (1 = as sharp as the truth, < 1 blurrier, > 1 noisier/over-sharpened).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.image import (
    image_gradients,
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 for red, green, blue
RGB_RANGES_NM = ((600.0, 700.0), (500.0, 600.0), (400.0, 500.0))
LPIPS_BACKBONES = {
    "alex": "AlexNet_Weights",
    "squeeze": "SqueezeNet1_1_Weights",
    "vgg": "VGG16_Weights",
}
LPIPS_SKIP_MESSAGE = (
    "LPIPS skipped: torchvision weights for the {net!r} backbone are not in {where} and cannot "
    "be downloaded here (copy {file} there to enable it)"
)


def rgb_indexes(wavelengths: torch.Tensor | np.ndarray | None, channels: int) -> list[int] | None:
    """Band indexes of red, green, blue (by wavelength), or the first three bands, or None."""
    if wavelengths is not None:
        waves = np.asarray(torch.as_tensor(wavelengths).flatten().cpu(), dtype=float)[:channels]
        picks = []
        for low, high in RGB_RANGES_NM:
            inside = [i for i, w in enumerate(waves) if low <= w < high]
            if not inside:
                break
            picks.append(inside[0])
        if len(picks) == 3:
            return picks
    return None


def luminance(
    image: torch.Tensor, wavelengths: torch.Tensor | np.ndarray | None = None
) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, 1, H, W]``: BT.601 luma of the RGB bands, else the band mean."""
    rgb = rgb_indexes(wavelengths, image.shape[1])
    if rgb is None:
        return image.mean(dim=1, keepdim=True)
    weights = torch.tensor(LUMA_WEIGHTS, dtype=image.dtype, device=image.device)
    return (image[:, rgb] * weights[None, :, None, None]).sum(dim=1, keepdim=True)


def masked_psnr(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range: float
) -> float:
    """PSNR over the pixels where ``mask`` ``[B, H, W]`` is True (NaN if none).

    Hand-written: torchmetrics' PSNR has no pixel mask (needed for changed/unchanged regions).
    """
    weight = mask[:, None].to(pred.dtype).expand_as(pred)
    count = weight.sum()
    if count == 0:
        return float("nan")
    mse = ((pred - target).square() * weight).sum() / count
    return float(10 * torch.log10(data_range**2 / mse.clamp_min(1e-12)))


def average_gradient(
    image: torch.Tensor, wavelengths: torch.Tensor | np.ndarray | None = None
) -> float:
    """No-reference sharpness: mean gradient magnitude of the luminance."""
    dy, dx = image_gradients(luminance(image, wavelengths))
    return float(torch.sqrt((dx.square() + dy.square()) / 2).mean())


def lpips_weights_file(net: str = "alex") -> Path:
    """Where torchvision keeps the LPIPS backbone weights of ``net`` once downloaded."""
    import torchvision.models as tvm

    url = getattr(tvm, LPIPS_BACKBONES[net]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def lpips_available(net: str = "alex") -> bool:
    """Whether LPIPS can run offline (its backbone weights are in the torch hub cache)."""
    return lpips_weights_file(net).is_file()


def lpips(
    pred: torch.Tensor,
    target: torch.Tensor,
    low: float,
    high: float,
    wavelengths: torch.Tensor | np.ndarray | None = None,
    net: str = "alex",
) -> float | None:
    """LPIPS of the RGB bands (or the first three) scaled from ``[low, high]`` to ``[-1, 1]``.

    Returns None (see :data:`LPIPS_SKIP_MESSAGE`) when the backbone weights are not local or
    the images have fewer than 3 bands.
    """
    if not lpips_available(net) or pred.shape[1] < 3:
        return None
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    rgb = rgb_indexes(wavelengths, pred.shape[1]) or [0, 1, 2]
    metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=False)

    def scaled(x: torch.Tensor) -> torch.Tensor:
        return ((x[:, rgb] - low) / (high - low) * 2 - 1).clamp(-1, 1).float()

    return float(metric(scaled(pred), scaled(target)))


def lpips_skip_message(net: str = "alex") -> str:
    """Why LPIPS was skipped."""
    file = lpips_weights_file(net)
    return LPIPS_SKIP_MESSAGE.format(net=net, where=file.parent, file=file.name)


def sr_metrics(
    pred: torch.Tensor,
    target: torch.Tensor,
    wavelengths: torch.Tensor | np.ndarray | None = None,
    data_range: tuple[float, float] | None = None,
    with_lpips: bool = True,
) -> dict[str, Any]:
    """PSNR/SSIM on luminance and per band, LPIPS, average gradient (and its ratio to target).

    Args:
        pred: ``[B, C, H, W]`` super-resolved images.
        target: ``[B, C, H, W]`` ground truth.
        wavelengths: Band wavelengths (nm) to find the RGB bands for luminance/LPIPS.
        data_range: ``(low, high)`` value range (default: the target's min and max).
        with_lpips: Compute LPIPS when available.

    Returns:
        ``psnr_y``, ``ssim_y``, ``psnr_bands`` (list), ``ssim_bands`` (list), ``psnr`` (mean of
        bands), ``lpips`` (float or None, with ``lpips_note``), ``avg_gradient``,
        ``avg_gradient_ratio``.
    """
    pred, target = pred.float(), target.float()
    low, high = data_range or (float(target.min()), float(target.max()))
    span = max(high - low, 1e-12)
    result: dict[str, Any] = {}
    luma_p, luma_t = luminance(pred, wavelengths), luminance(target, wavelengths)
    result["psnr_y"] = float(peak_signal_noise_ratio(luma_p, luma_t, data_range=span))
    result["ssim_y"] = float(structural_similarity_index_measure(luma_p, luma_t, data_range=span))
    bands_p = [pred[:, c : c + 1] for c in range(pred.shape[1])]
    bands_t = [target[:, c : c + 1] for c in range(target.shape[1])]
    result["psnr_bands"] = [
        float(peak_signal_noise_ratio(p, t, data_range=span))
        for p, t in zip(bands_p, bands_t, strict=True)
    ]
    result["ssim_bands"] = [
        float(structural_similarity_index_measure(p, t, data_range=span))
        for p, t in zip(bands_p, bands_t, strict=True)
    ]
    result["psnr"] = float(np.mean(result["psnr_bands"]))
    result["lpips"] = lpips(pred, target, low, high, wavelengths) if with_lpips else None
    if with_lpips and result["lpips"] is None:
        result["lpips_note"] = lpips_skip_message()
    sharp_p, sharp_t = average_gradient(pred, wavelengths), average_gradient(target, wavelengths)
    result["avg_gradient"] = sharp_p
    result["avg_gradient_ratio"] = sharp_p / max(sharp_t, 1e-12)
    return result


__all__ = [
    "LPIPS_SKIP_MESSAGE",
    "average_gradient",
    "lpips",
    "lpips_available",
    "lpips_skip_message",
    "luminance",
    "masked_psnr",
    "rgb_indexes",
    "sr_metrics",
]

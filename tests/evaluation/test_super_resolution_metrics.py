"""Super-resolution metrics on hand-made predictions whose values are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from rsfm.evaluation.super_resolution import average_gradient, luminance, masked_psnr, sr_metrics

# Bands stored blue, green, red (not RGB order): luminance must find them by wavelength.
WAVES = torch.tensor([490.0, 560.0, 665.0])
OFFSETS = (0.05, 0.2, 0.1)  # per band, in the same blue, green, red order


def _target() -> torch.Tensor:
    """A textured [1, 3, 32, 32] image spanning exactly [0, 1] (so the data range is 1)."""
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    target[0, 0, 0, 0], target[0, 1, 0, 1] = 0.0, 1.0
    return target


def _psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / mse)


def test_constant_band_offsets_give_closed_form_psnr_and_unchanged_sharpness() -> None:
    target = _target()
    pred = target + torch.tensor(OFFSETS)[None, :, None, None]
    metrics = sr_metrics(pred, target, WAVES, with_lpips=False)
    assert metrics["psnr_bands"] == pytest.approx([_psnr(o**2) for o in OFFSETS], abs=1e-3)
    assert metrics["psnr"] == pytest.approx(sum(_psnr(o**2) for o in OFFSETS) / 3, abs=1e-3)
    # BT.601 luma of the offsets: 0.299 red + 0.587 green + 0.114 blue = 0.153.
    luma_offset = 0.299 * 0.1 + 0.587 * 0.2 + 0.114 * 0.05
    assert metrics["psnr_y"] == pytest.approx(_psnr(luma_offset**2), abs=1e-3)
    # A constant offset moves no gradient: the sharpness ratio is exactly 1.
    assert metrics["avg_gradient_ratio"] == pytest.approx(1.0, abs=1e-5)
    assert metrics["lpips"] is None and "lpips_note" not in metrics
    # Without wavelengths the luminance is the band mean: offset (0.05 + 0.2 + 0.1) / 3.
    plain = sr_metrics(pred, target, None, with_lpips=False)
    assert plain["psnr_y"] == pytest.approx(_psnr((sum(OFFSETS) / 3) ** 2), abs=1e-3)


def test_ssim_is_one_only_for_the_target_and_blur_lowers_sharpness() -> None:
    target = _target()
    same = sr_metrics(target.clone(), target, WAVES, with_lpips=False)
    assert same["ssim_y"] == pytest.approx(1.0, abs=1e-6)
    assert same["ssim_bands"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
    assert same["avg_gradient_ratio"] == pytest.approx(1.0)
    # A 3x3 box blur of white-noise texture: structure and gradients mostly gone (measured
    # SSIM 0.16, gradient ratio 0.20).
    blurred = torch.nn.functional.avg_pool2d(
        target, 3, stride=1, padding=1, count_include_pad=False
    )
    blur = sr_metrics(blurred, target, WAVES, with_lpips=False)
    assert blur["ssim_y"] < 0.5 and blur["avg_gradient_ratio"] < 0.5, blur
    noisy = target + 0.2 * torch.randn(target.shape, generator=torch.Generator().manual_seed(1))
    assert (
        sr_metrics(noisy, target, WAVES, with_lpips=False)["avg_gradient_ratio"] > 1.2
    )  # measured 1.32


def test_luminance_masked_psnr_and_average_gradient_by_hand() -> None:
    image = torch.zeros(1, 3, 4, 4)
    image[0, 2] = 1.0  # red only (third band at 665 nm)
    torch.testing.assert_close(luminance(image, WAVES), torch.full((1, 1, 4, 4), 0.299))
    # A vertical step of 1 in the luma: image_gradients gives dx = 1 on one column of 4
    # (its last column is zero padding), dy = 0, so mean(sqrt((dx^2 + dy^2) / 2)) = 1/(4 sqrt 2).
    step = torch.zeros(1, 3, 4, 4)
    step[..., 2:] = 1.0
    assert average_gradient(step) == pytest.approx(1 / (4 * math.sqrt(2)), rel=1e-6)
    target = torch.zeros(1, 1, 2, 2)
    pred = torch.tensor([[[[0.1, 0.5], [0.0, 0.0]]]])
    mask = torch.tensor([[[True, False], [True, True]]])  # the 0.5 error is masked out
    assert masked_psnr(pred, target, mask, 1.0) == pytest.approx(_psnr(0.01 / 3), abs=1e-4)
    assert math.isnan(masked_psnr(pred, target, torch.zeros_like(mask), 1.0))

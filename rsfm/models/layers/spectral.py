"""Spectrum-aware patch projection: one linear patch projection per spectral range.

A band is routed by its centre wavelength to the spectral range that contains it; each range has
its own ``p*p -> D`` projection. Any band set (Sentinel-2, Landsat, Sentinel-1, a 224-band
imaging spectrometer) is embedded by the same weights, and the per-band embeddings are averaged,
so the token count never depends on the band count (SMARTIES, Sumbul et al. 2025).

The default table, ``DEFAULT_SPECTRAL_RANGES``, holds half-open intervals ``[min_nm, max_nm)``
that never overlap. Optical ranges tile 350-2600 nm without gaps (so every band of EnMAP, EMIT
and NEON AOP is covered) and are split where Sentinel-2 and Landsat OLI bands differ physically:

=====================  ==================  =============================================
range                  interval (nm)       bands routed there (centre nm)
=====================  ==================  =============================================
aerosol                [350, 460)          S2 B01 442.7, OLI B1 443
blue                   [460, 520)          S2 B02 492.4, OLI B2 482.5, NAIP B, RGB B
green                  [520, 575)          S2 B03 559.8, OLI B3 562.5, NAIP G, RGB G
yellow                 [575, 620)          OLI B8 (panchromatic) 590
red                    [620, 695)          S2 B04 664.6, OLI B4 655, NAIP R, RGB R
red_edge_1             [695, 725)          S2 B05 704.1
red_edge_2             [725, 760)          S2 B06 740.5
red_edge_3             [760, 800)          S2 B07 782.8
nir_broad              [800, 850)          S2 B08 832.8, NAIP N 845
nir_narrow             [850, 900)          S2 B8A 864.7, OLI B5 865
water_vapour           [900, 1000)         S2 B09 945.1
nir_swir_transition    [1000, 1300)        imaging spectrometers only
cirrus                 [1300, 1450)        S2 B10 1373.5, OLI B9 1375
swir_1                 [1450, 1800)        S2 B11 1613.7, OLI B6 1610
swir_mid               [1800, 2050)        imaging spectrometers only
swir_2                 [2050, 2600)        S2 B12 2202.4, OLI B7 2200
tir_1                  [8000, 11500)       TIRS B10 10895
tir_2                  [11500, 15000)      TIRS B11 12005
=====================  ==================  =============================================

SAR channels carry the signed radar wavelength (see :mod:`rsfm.sensors`: co-pol positive,
cross-pol negative). The SAR ranges are the IEEE radar-band limits in wavelength: X 8-12 GHz
(2.5-3.75 cm, TerraSAR-X ~3.1e7 nm), C 4-8 GHz (3.75-7.5 cm, Sentinel-1 ~5.55e7 nm),
L 1-2 GHz (15-30 cm, ALOS/NISAR ~2.38e8 nm), each once for co-pol and once for cross-pol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class SpectralRange(NamedTuple):
    """A half-open wavelength interval ``[min_nm, max_nm)`` with its own patch projection."""

    name: str
    min_nm: float
    max_nm: float


DEFAULT_SPECTRAL_RANGES: tuple[SpectralRange, ...] = (
    SpectralRange("aerosol", 350.0, 460.0),
    SpectralRange("blue", 460.0, 520.0),
    SpectralRange("green", 520.0, 575.0),
    SpectralRange("yellow", 575.0, 620.0),
    SpectralRange("red", 620.0, 695.0),
    SpectralRange("red_edge_1", 695.0, 725.0),
    SpectralRange("red_edge_2", 725.0, 760.0),
    SpectralRange("red_edge_3", 760.0, 800.0),
    SpectralRange("nir_broad", 800.0, 850.0),
    SpectralRange("nir_narrow", 850.0, 900.0),
    SpectralRange("water_vapour", 900.0, 1000.0),
    SpectralRange("nir_swir_transition", 1000.0, 1300.0),
    SpectralRange("cirrus", 1300.0, 1450.0),
    SpectralRange("swir_1", 1450.0, 1800.0),
    SpectralRange("swir_mid", 1800.0, 2050.0),
    SpectralRange("swir_2", 2050.0, 2600.0),
    SpectralRange("tir_1", 8000.0, 11500.0),
    SpectralRange("tir_2", 11500.0, 15000.0),
    SpectralRange("sar_x_co", 2.5e7, 3.75e7),
    SpectralRange("sar_x_cross", -3.75e7, -2.5e7),
    SpectralRange("sar_c_co", 3.75e7, 7.5e7),
    SpectralRange("sar_c_cross", -7.5e7, -3.75e7),
    SpectralRange("sar_l_co", 1.5e8, 3.0e8),
    SpectralRange("sar_l_cross", -3.0e8, -1.5e8),
)


class UnknownWavelengthError(ValueError):
    """A band's centre wavelength lies outside every spectral range of the model."""


def as_spectral_ranges(
    ranges: Sequence[SpectralRange | Sequence[str | float]] | None,
) -> tuple[SpectralRange, ...]:
    """Validate a range table (``None`` means the default table).

    Args:
        ranges: Rows of ``(name, min_nm, max_nm)``.

    Returns:
        The table as ``SpectralRange`` tuples, in the given order (the order fixes the index of
        each range's projection weights).

    Raises:
        ValueError: On an empty table, duplicate names, ``min_nm >= max_nm`` or overlaps.
    """
    if ranges is None:
        return DEFAULT_SPECTRAL_RANGES
    table = tuple(SpectralRange(str(n), float(lo), float(hi)) for n, lo, hi in ranges)
    if not table:
        raise ValueError("the spectral range table is empty")
    names = [r.name for r in table]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate spectral range names in {names}")
    for r in table:
        if not r.min_nm < r.max_nm:
            raise ValueError(f"spectral range {r.name!r} has min_nm >= max_nm: {r}")
    ordered = sorted(table, key=lambda r: r.min_nm)
    for left, right in zip(ordered, ordered[1:], strict=False):
        if right.min_nm < left.max_nm:
            raise ValueError(f"spectral ranges {left.name!r} and {right.name!r} overlap")
    return table


def describe_ranges(ranges: Sequence[SpectralRange]) -> str:
    """One-line human-readable listing of a range table."""
    return ", ".join(f"{r.name} [{r.min_nm:g}, {r.max_nm:g}) nm" for r in ranges)


def range_index(
    wavelengths: torch.Tensor, ranges: Sequence[SpectralRange] = DEFAULT_SPECTRAL_RANGES
) -> torch.Tensor:
    """Index of the range containing each centre wavelength.

    Args:
        wavelengths: Centre wavelengths in nm, any shape; NaN marks a padded band.
        ranges: The range table.

    Returns:
        LongTensor of the input's shape; -1 where the wavelength is NaN.

    Raises:
        UnknownWavelengthError: If a non-NaN wavelength lies outside every range.
    """
    wavelengths = torch.as_tensor(wavelengths)
    bounds = torch.tensor(
        [[r.min_nm, r.max_nm] for r in ranges], dtype=torch.float64, device=wavelengths.device
    )
    w = wavelengths.to(torch.float64).unsqueeze(-1)  # [..., 1]
    inside = (w >= bounds[:, 0]) & (w < bounds[:, 1])  # [..., R], at most one True per band
    found = inside.any(-1)
    padded = torch.isnan(wavelengths)
    unknown = ~found & ~padded
    if bool(unknown.any()):
        values = sorted({float(v) for v in wavelengths[unknown].flatten().tolist()})
        raise UnknownWavelengthError(
            f"wavelength(s) {values} nm lie outside every spectral range of this model; "
            f"covered ranges: {describe_ranges(ranges)}"
        )
    index = inside.to(torch.int8).argmax(-1)
    return torch.where(padded, torch.full_like(index, -1), index)


def patchify(image: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut an image into per-band patches.

    Args:
        image: [B, C, H, W] with H and W multiples of ``patch_size``.
        patch_size: Patch side p.

    Returns:
        [B, N, C, p*p] with N = (H/p)*(W/p) in row-major order.

    Raises:
        ValueError: If the image is not 4-D or H, W are not multiples of p.
    """
    if image.ndim != 4:
        raise ValueError(f"expected an image of shape [B, C, H, W], got {tuple(image.shape)}")
    b, c, h, w = image.shape
    if h % patch_size or w % patch_size:
        raise ValueError(
            f"image size {h}x{w} is not a multiple of the patch size {patch_size}; "
            f"crop or pad to e.g. {h - h % patch_size}x{w - w % patch_size}"
        )
    gh, gw = h // patch_size, w // patch_size
    x = image.reshape(b, c, gh, patch_size, gw, patch_size)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, c, patch_size * patch_size)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_size: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`patchify`: [B, N, C, p*p] -> [B, C, H, W]."""
    b, n, c, _ = patches.shape
    gh, gw = grid_size
    if n != gh * gw:
        raise ValueError(f"{n} patches do not fill a {gh}x{gw} grid")
    x = patches.reshape(b, gh, gw, c, patch_size, patch_size)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * patch_size, gw * patch_size)


def band_ranges_for_batch(
    wavelengths: torch.Tensor,
    batch_size: int,
    num_bands: int,
    ranges: Sequence[SpectralRange],
) -> torch.Tensor:
    """Route a batch's wavelengths ([C] shared or [B, C] per sample) to [B, C] range indices.

    Raises:
        ValueError: If the wavelengths do not match the image's batch size or band count.
        UnknownWavelengthError: If a band lies outside every range.
    """
    if wavelengths.ndim == 1:
        wavelengths = wavelengths.unsqueeze(0).expand(batch_size, -1)
    if wavelengths.ndim != 2 or wavelengths.shape != (batch_size, num_bands):
        raise ValueError(
            f"wavelengths of shape {tuple(wavelengths.shape)} do not match an image with "
            f"batch size {batch_size} and {num_bands} bands; expected [{num_bands}] or "
            f"[{batch_size}, {num_bands}]"
        )
    band_range = range_index(wavelengths, ranges)
    empty = (band_range < 0).all(dim=1)
    if bool(empty.any()):
        raise ValueError(
            f"sample(s) {empty.nonzero().flatten().tolist()} have no valid band "
            "(all wavelengths are NaN)"
        )
    return band_range


class SpectralPatchEmbed(nn.Module):
    """Per-range linear patch projection, averaged over the bands present.

    Each band's ``p x p`` patch is projected by the linear layer of the range containing its
    centre wavelength; the per-band embeddings are averaged over the valid (non-NaN) bands and
    multiplied by ``projection_scale``.

    Args:
        patch_size: Patch side p.
        embed_dim: Token dimension D.
        ranges: Range table rows ``(name, min_nm, max_nm)``; None also means the default.
        projection_scale: Factor on the averaged embedding (SMARTIES uses 12).
    """

    def __init__(
        self,
        patch_size: int,
        embed_dim: int,
        ranges: Sequence[SpectralRange | Sequence[str | float]] | None = DEFAULT_SPECTRAL_RANGES,
        projection_scale: float = 12.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.ranges = as_spectral_ranges(ranges)
        self.projection_scale = float(projection_scale)
        num_pixels = patch_size * patch_size
        self.weight = nn.Parameter(torch.empty(len(self.ranges), num_pixels, embed_dim))
        self.bias = nn.Parameter(torch.zeros(len(self.ranges), embed_dim))
        self.reset_parameters()

    @property
    def num_ranges(self) -> int:
        """Number of spectral ranges R."""
        return len(self.ranges)

    def reset_parameters(self) -> None:
        """Xavier-uniform per range (as MAE initialises its patch projection), zero bias."""
        with torch.no_grad():
            for r in range(self.num_ranges):
                nn.init.xavier_uniform_(self.weight[r])
            self.bias.zero_()

    def range_index(self, wavelengths: torch.Tensor) -> torch.Tensor:
        """Range index per wavelength (-1 for NaN); see :func:`range_index`."""
        return range_index(wavelengths, self.ranges)

    def embed_patches(self, patches: torch.Tensor, band_range: torch.Tensor) -> torch.Tensor:
        """Embed already-cut patches.

        The projection is linear, so the mean over bands of ``W_r(c) x_c + b_r(c)`` equals
        ``sum_r W_r (sum_{c in r} x_c) + sum_c b_r(c)`` divided by the band count: pixels are
        first summed per range (one einsum with a band->range assignment matrix), then every
        range used in the batch is projected in one einsum. No Python loop over bands, and memory
        does not grow with the band count (224-band spectrometers cost as much as Sentinel-2).

        Args:
            patches: [B, N, C, p*p].
            band_range: [B, C] range index per band, -1 for padded bands.

        Returns:
            Tokens [B, N, D].
        """
        valid = band_range >= 0  # [B, C]
        used, slot = torch.unique(band_range.clamp(min=0), return_inverse=True)  # [U], [B, C]
        assign = F.one_hot(slot, used.numel()).to(patches.dtype) * valid.unsqueeze(-1)  # [B,C,U]
        # Padded bands may hold NaN pixels; zero them so 0 * NaN never reaches the sum.
        patches = patches.masked_fill(~valid[:, None, :, None], 0.0)
        per_range = torch.einsum("bncp,bcu->bnup", patches, assign)  # [B, N, U, p*p]
        tokens = torch.einsum("bnup,upd->bnd", per_range, self.weight[used])  # [B, N, D]
        bias = assign.sum(1) @ self.bias[used]  # [B, D]: sum of the biases of the bands present
        num_valid = valid.sum(1).clamp(min=1).to(patches.dtype)  # [B]
        tokens = (tokens + bias.unsqueeze(1)) / num_valid[:, None, None]
        return self.projection_scale * tokens

    def forward(self, image: torch.Tensor, wavelengths: torch.Tensor) -> torch.Tensor:
        """Embed an image.

        Args:
            image: [B, C, H, W], H and W multiples of the patch size.
            wavelengths: [C] or [B, C] centre wavelengths (nm); NaN marks padded bands.

        Returns:
            Tokens [B, N, D] with N = (H/p)*(W/p).
        """
        patches = patchify(image, self.patch_size)  # [B, N, C, p*p]
        band_range = band_ranges_for_batch(
            wavelengths.to(image.device), image.shape[0], image.shape[1], self.ranges
        )
        return self.embed_patches(patches, band_range)

"""Landscapes for the synthetic world: land-cover maps and smooth variability fields.

A label map is the argmax of per-class smooth random fields (two scales, tilted by per-scene
class priors), with settlements drawn towards a road, a meandering river with a riparian
wetland fringe, and rectangular crop parcels. Three variability fields (brightness ``b``,
class condition ``u``, moisture ``v``; ~N(0, 1), clipped to +-2.5) give every class smooth
within-class structure; their spectral meaning lives in :mod:`rsfm.data.synthetic.spectra`.
All draws come from the caller's ``numpy.random.Generator``, so scenes are reproducible.
``scale`` (``SyntheticWorldConfig.landscape_scale``) multiplies every length; at 1 the draws and
values are exactly the default world's.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from rsfm.data.synthetic.spectra import NUM_CLASSES, LandCover


def _coarse_field(
    rng: np.random.Generator, shape: tuple[int, int], gsd: float, scale_m: float, step: int
) -> np.ndarray:
    """Standardised Gaussian random field (correlation length ~``scale_m``) on a grid of
    ``step`` x ``step`` fine pixels, two cells larger than needed to cover ``shape``."""
    # Filtering white noise on a coarse grid and upsampling is ~100x cheaper than at full res.
    coarse = rng.standard_normal((shape[0] // step + 2, shape[1] // step + 2))
    coarse = ndimage.gaussian_filter(coarse, sigma=scale_m / (step * gsd) / 2, mode="reflect")
    return (coarse - coarse.mean()) / (coarse.std() + 1e-12)


def _upsample(coarse: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of a coarse field by ``step`` (cell centres aligned), float32."""
    if step == 1:
        return coarse[: shape[0], : shape[1]].astype(np.float32)

    def taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
        position = (np.arange(n_out) + 0.5) / step - 0.5
        first = np.clip(np.floor(position).astype(np.intp), 0, n_in - 2)
        return first, np.clip(position - first, 0.0, 1.0).astype(np.float32)

    # Hand-written: ndimage.zoom(order=1) is ~3x slower for this separable integer-factor case.
    coarse = coarse.astype(np.float32)
    row0, row_t = taps(shape[0], coarse.shape[0])
    rows = coarse[row0] * (1 - row_t)[:, None] + coarse[row0 + 1] * row_t[:, None]
    col0, col_t = taps(shape[1], coarse.shape[1])
    return rows[:, col0] * (1 - col_t) + rows[:, col0 + 1] * col_t


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, int], gsd: float, scale_m: float
) -> np.ndarray:
    """Standardised Gaussian random field with correlation length ~``scale_m`` at ``shape``."""
    step = _step(gsd, scale_m)
    return _upsample(_coarse_field(rng, shape, gsd, scale_m, step), step, shape)


def _step(gsd: float, scale_m: float) -> int:
    return max(1, int(scale_m / gsd / 4))


def _line_distance(
    rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, size: float
) -> np.ndarray:
    """Distance (m) to a straight line of random angle through a random point."""
    angle = rng.uniform(0.0, np.pi)
    y0, x0 = rng.uniform(0.2, 0.8, 2) * size
    return np.abs((xs - x0) * np.sin(angle) - (ys - y0) * np.cos(angle))


def _river_distance(
    rng: np.random.Generator, ys: np.ndarray, xs: np.ndarray, size: float
) -> np.ndarray:
    """Distance (m) to a meandering river centre line crossing the scene."""
    along, across = (ys, xs) if rng.random() < 0.5 else (xs, ys)
    wavelength = rng.uniform(0.6, 1.5) * size
    amplitude = rng.uniform(0.05, 0.15) * size
    phase1, phase2 = rng.uniform(0.0, 2 * np.pi, 2)
    centre = rng.uniform(0.25, 0.75) * size
    arg1 = 2 * np.pi * along / wavelength + phase1
    arg3 = 6 * np.pi * along / wavelength + phase2
    line = centre + amplitude * (np.sin(arg1) + 0.3 * np.sin(arg3))
    slope = amplitude * 2 * np.pi / wavelength * (np.cos(arg1) + 0.9 * np.cos(arg3))
    return np.abs(across - line) / np.sqrt(1.0 + slope**2)


def _crop_parcels(
    rng: np.random.Generator, shape: tuple[int, int], gsd: float, scale: float = 1.0
) -> np.ndarray:
    """Per-pixel growth stage of rectangular crop parcels (strips cut into fields)."""
    values = np.empty(shape, dtype=np.float32)
    xs = (np.arange(shape[1]) + 0.5) * gsd
    row = 0
    while row < shape[0]:
        height = max(1, int(rng.uniform(60.0, 200.0) * scale / gsd))
        edges = np.cumsum(rng.uniform(60.0, 250.0, size=int(xs[-1] / (60.0 * scale)) + 2) * scale)
        stages = rng.uniform(-1.6, 1.6, size=edges.size + 1).astype(np.float32)
        values[row : row + height] = stages[np.searchsorted(edges, xs)]
        row += height
    return values


# Base class shares before per-scene tilting; wetland mostly comes from the riparian zone.
_CLASS_PRIORS = np.array([0.06, 0.26, 0.2, 0.28, 0.1, 0.07, 0.03])


def draw_label_map(
    rng: np.random.Generator, shape: tuple[int, int], gsd: float, scale: float = 1.0
) -> np.ndarray:
    """Land-cover map (uint8 class ids) of ``shape`` pixels of ``gsd`` metres.

    ``scale`` multiplies every length of the map (patch sizes, settlement reach, river and road
    widths, riparian fringe); the river's course is relative to the scene and does not change.
    """
    size = shape[0] * gsd
    ys, xs = np.meshgrid(
        (np.arange(shape[0]) + 0.5) * gsd,
        (np.arange(shape[1]) + 0.5) * gsd,
        indexing="ij",
        sparse=True,
    )
    priors = _CLASS_PRIORS * np.exp(rng.normal(0.0, 0.4, NUM_CLASSES))
    priors /= priors.sum()
    scores = np.empty((NUM_CLASSES, *shape), dtype=np.float32)
    step = _step(gsd, 60.0 * scale)  # large- and medium-scale parts are summed on one grid
    for cls in range(NUM_CLASSES):
        large = _coarse_field(rng, shape, gsd, rng.uniform(250.0, 450.0) * scale, step)
        medium = _coarse_field(rng, shape, gsd, 60.0 * scale, step)
        scores[cls] = _upsample(large + 0.35 * medium + np.log(priors[cls]), step, shape)
    road = _line_distance(rng, ys, xs, size)
    # settlements grow along roads
    scores[LandCover.BUILT_UP] += 1.2 * np.exp(-road / (150.0 * scale))
    labels = np.argmax(scores, axis=0).astype(np.uint8)

    river = _river_distance(rng, ys, xs, size)
    river_half_width = rng.uniform(8.0, 22.0) * scale
    wet = smooth_field(rng, shape, gsd, 80.0 * scale)
    labels[(river < river_half_width + 90.0 * scale) & (wet > 0.0)] = LandCover.WETLAND
    labels[river < river_half_width] = LandCover.WATER
    labels[road < rng.uniform(4.0, 6.0) * scale] = LandCover.BUILT_UP
    return labels


def draw_variability_fields(
    rng: np.random.Generator, labels: np.ndarray, gsd: float, scale: float = 1.0
) -> np.ndarray:
    """Fields b, u, v (float32 [3, H, W]); cropland ``u`` is constant per parcel.

    ``scale`` multiplies the correlation lengths of the fields and the parcel sizes.
    """
    shape = labels.shape

    def field(scale_m: float) -> np.ndarray:
        return smooth_field(rng, shape, gsd, scale_m * scale)

    fields = np.empty((3, *shape), dtype=np.float32)
    fields[0] = field(200.0) + 0.3 * field(8.0)
    fields[1] = field(120.0) + 0.3 * field(8.0)
    fields[2] = field(400.0)
    crops = labels == LandCover.CROPLAND
    fields[1][crops] = _crop_parcels(rng, shape, gsd, scale)[crops] + 0.3 * fields[1][crops]
    return np.clip(fields, -2.5, 2.5)

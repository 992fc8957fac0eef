"""Checks of a tiled run's input against the model card, before anything is computed.

Two silent failures are caught here (``rsfm tile`` warns; ``--strict`` refuses):

- **Units far from training.** A uint8 raster fed to a model normalised for Sentinel-2
  reflectance x 10,000, or a uint16 pan image fed with NAIP's 0-255 statistics, gives a
  near-constant map. A decimated read of the input (at most ``SAMPLE_SIDE`` px a side, valid
  pixels only) gives per band the 1st / 50th / 99th percentiles; a band is *far* from the
  card's statistics of that band (clip range ``low..high``) when its p1-p99 range is under
  1/10 or over 10 times ``high - low`` (judged from ``MIN_SPREAD_PIXELS`` valid pixels or
  more: one pixel has no spread), or its median lies outside
  ``[low - (high - low), high + (high - low)]``. The input is flagged when at least half of
  its bands are far.
- **A sensor the task head never saw.** A head fine-tuned on Sentinel-2 applied to another
  sensor whose bands the encoder knows from pretraining: the card's last training stage names
  the sensors the head was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.enums import Resampling

from rsfm.band_stats import BandStats
from rsfm.data.grid import decimated_shape
from rsfm.sensors import Sensor

if TYPE_CHECKING:
    from rsfm.hub.card import ModelCard

SAMPLE_SIDE = 512
RANGE_RATIO = 10.0
FAR_SHARE = 0.5
MIN_SPREAD_PIXELS = 64  # fewer valid pixels (a 1x1 raster) say nothing about the value range
EMPTY_OUTPUT_SHARE = 0.99  # an output this empty from a mostly valid input is an error


class InputCheckError(ValueError):
    """The input fails a check and ``--strict`` was asked for."""


def check_readable(path: Path) -> None:
    """Raise :class:`~rsfm.data.errors.UnreadableRasterError` unless ``path`` opens as a raster.

    Run first, so a missing, zero-byte, not-a-TIFF or header-truncated file gets the data
    layer's one-line error instead of a raw GDAL message from whatever reads it first.
    """
    from rasterio.errors import RasterioIOError

    from rsfm.data.errors import UnreadableRasterError

    if not path.is_file():
        raise UnreadableRasterError(path, "no such file")
    if path.stat().st_size == 0:
        raise UnreadableRasterError(path, "the file is empty (0 bytes)")
    try:
        with rasterio.open(path) as src:
            src.read(1, window=((0, 1), (0, 1)))
    except RasterioIOError as err:
        raise UnreadableRasterError(
            path, f"not a readable raster (not a GeoTIFF, or truncated): {err}"
        ) from None


def _decimated_read(path: Path, bands: list[int] | None, **kwargs) -> np.ma.MaskedArray:
    """A decimated, masked read of ``bands`` (1-based; None: all); a block that cannot be
    decoded (a truncated or corrupt file) raises an error naming the file."""
    from rasterio.errors import RasterioError

    from rsfm.data.errors import UnreadableRasterError

    try:
        with rasterio.open(path) as src:
            bands = list(bands or range(1, src.count + 1))
            shape = (len(bands), *decimated_shape(src.height, src.width, SAMPLE_SIDE))
            return src.read(
                bands, out_shape=shape, resampling=Resampling.nearest, masked=True, **kwargs
            )
    except RasterioError as err:
        raise UnreadableRasterError(
            path, f"cannot decode its pixels (truncated or corrupt file): {err}"
        ) from None


def sample_valid_pixels(path: Path, bands: list[int]) -> np.ndarray:
    """A decimated read [C, N] of the valid pixels of ``bands`` (1-based)."""
    data = _decimated_read(path, bands, out_dtype="float32")
    values = np.ma.filled(data.astype(np.float32), np.nan).reshape(len(bands), -1)
    return values[:, np.isfinite(values).all(axis=0)]


def far_bands(values: np.ndarray, wavelengths: np.ndarray, stats: BandStats) -> list[str]:
    """Bands of ``values`` [C, N] far from ``stats`` (see the module docstring), described."""
    if values.shape[1] == 0:
        return []
    rows = stats.rows_for(wavelengths)
    p1, p50, p99 = np.percentile(values, [1, 50, 99], axis=1)
    far = []
    for band, row in enumerate(rows):
        if row < 0:
            continue
        low, high = stats.low[row], stats.high[row]
        span = max(high - low, 1e-12)
        spread = p99[band] - p1[band]
        outside = not (low - span <= p50[band] <= high + span)
        ratio_off = values.shape[1] >= MIN_SPREAD_PIXELS and (
            spread < span / RANGE_RATIO or spread > span * RANGE_RATIO
        )
        if outside or ratio_off:
            far.append(
                f"{stats.band_names[row]}: input p1-p99 {p1[band]:.4g}..{p99[band]:.4g} "
                f"(median {p50[band]:.4g}) vs training {low:.4g}..{high:.4g}"
            )
    return far if len(far) >= FAR_SHARE * len(rows) else []


def statistics_notice(
    path: Path, bands: list[int], wavelengths: np.ndarray, stats: BandStats | None
) -> str | None:
    """A one-line notice when the input's values look like other units than training's."""
    if stats is None:
        return None
    far = far_bands(sample_valid_pixels(path, bands), np.asarray(wavelengths), stats)
    if not far:
        return None
    shown = "; ".join(far[:3]) + (f"; and {len(far) - 3} more" if len(far) > 3 else "")
    return (
        f"{path}: values far from the model's training statistics ({stats.sensor}) in "
        f"{len(far)} of {len(wavelengths)} bands ({shown}): other units or scaling? "
        "Convert the input to the training units; predictions on it are unreliable"
    )


def head_sensor_notice(path: Path, sensor: Sensor, card: ModelCard | None) -> str | None:
    """A notice when a task head's last training stage never saw the input's sensor."""
    if card is None or not card.stages or card.stages[-1].stage == "pretraining":
        return None
    trained = list(card.stages[-1].sensors)
    if not trained or sensor.name in trained:
        return None
    return (
        f"{path}: sensor {sensor.name} is not among the sensors the {card.task} head of "
        f"{card.name}@{card.version} was trained on ({', '.join(trained)}); its predictions "
        "on this sensor are untested"
    )


def nodata_share(path: Path, bands: list[int] | None = None) -> float:
    """Share of nodata pixels in a decimated read (bad bands, ENVI ``bbl=0``, never count)."""
    from rsfm.sensors import bad_band_mask

    with rasterio.open(path) as src:
        bands = list(bands or range(1, src.count + 1))
    good = bad_band_mask(path)
    data = _decimated_read(path, [b for b in bands if good[b - 1]] or bands)
    invalid = np.ma.getmaskarray(data).any(axis=0)
    if np.issubdtype(data.dtype, np.floating):
        invalid |= ~np.isfinite(np.ma.filled(data, 0)).all(axis=0)
    return float(invalid.mean())


def input_notices(
    path: Path,
    sensor: Sensor,
    card: ModelCard | None,
    bands: list[int],
    wavelengths: np.ndarray,
    stats: BandStats | None,
) -> list[str]:
    """Every notice about the input (empty when it looks like the training data)."""
    notices = [
        head_sensor_notice(path, sensor, card),
        statistics_notice(path, bands, wavelengths, stats),
    ]
    return [n for n in notices if n]

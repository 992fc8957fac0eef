"""Band selection: which input bands a model gets, by wavelength, and with which statistics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from rsfm.band_stats import BandStats
from rsfm.data.errors import BandMismatchError
from rsfm.data.grid import canonical_band_name
from rsfm.sensors import Sensor, get_sensor, sensor_from_raster

WAVELENGTH_TOLERANCE_NM = 1.0


def input_sensor(path: Path, sensor: str | None, card_sensors: dict[str, Any]) -> Sensor:
    """The input's band metadata: ``--sensor``, the file's wavelength tags, its RSFM_SENSOR tag,
    or band descriptions / band count matching one sensor of the model card, in that order.

    Raises:
        BandMismatchError: Naming the file, when none of these describes its bands.
    """
    with rasterio.open(path) as ds:
        count, tags, descriptions = ds.count, ds.tags(), [d or "" for d in ds.descriptions]
    if sensor is not None:
        chosen = get_sensor(sensor)
    else:
        try:
            return sensor_from_raster(path)
        except ValueError:
            pass
        tagged = tags.get("RSFM_SENSOR")
        chosen = get_sensor(tagged) if tagged else None
        if chosen is None:
            for name in card_sensors:
                try:
                    candidate = get_sensor(name)
                except KeyError:
                    continue
                if len(candidate) == count:
                    chosen = candidate
                    break
    if chosen is None:
        raise BandMismatchError(
            path,
            f"{count} bands without wavelength metadata; pass --sensor (one of the model's: "
            f"{sorted(card_sensors)})",
        )
    if any(descriptions) and all(descriptions):
        by_name = {canonical_band_name(b.name): b for b in chosen.bands}
        if all(canonical_band_name(d) in by_name for d in descriptions):
            return Sensor(
                chosen.name,
                chosen.modality,
                tuple(by_name[canonical_band_name(d)] for d in descriptions),
            )
    if len(chosen) != count:
        raise BandMismatchError(
            path, f"{count} bands, but sensor {chosen.name!r} has {len(chosen)} bands"
        )
    return chosen


def select_bands(
    path: Path, sensor: Sensor, card: dict[str, Any], allow_missing: bool
) -> tuple[list[int], np.ndarray, BandStats | None]:
    """Input bands the model was trained with (1-based indexes), their wavelengths and stats.

    Raises:
        BandMismatchError: When the input lacks bands the model was trained with (unless
            ``allow_missing``) or shares none with it.
    """
    rsfm = card.get("rsfm", {})
    stats_by_sensor = {k: BandStats.from_dict(v) for k, v in rsfm.get("normalization", {}).items()}
    trained = np.array(
        [b["wavelength_nm"] for table in rsfm.get("sensors", {}).values() for b in table["bands"]],
        dtype=float,
    )
    waves = sensor.wavelengths.astype(float)
    if trained.size == 0:  # a card without band metadata: use every input band
        keep = list(range(len(waves)))
    else:
        keep = [
            i for i, w in enumerate(waves) if np.abs(trained - w).min() <= WAVELENGTH_TOLERANCE_NM
        ]
    if not keep:
        raise BandMismatchError(
            path, f"none of its bands ({waves.tolist()} nm) is a band the model was trained with"
        )
    stats = _stats_for(waves[keep], stats_by_sensor)
    if stats_by_sensor and stats is None:
        raise BandMismatchError(path, "no normalisation statistics of the model cover its bands")
    wanted = stats.wavelengths if stats is not None else trained
    missing = [float(w) for w in wanted if np.abs(waves - w).min() > WAVELENGTH_TOLERANCE_NM]
    if missing and not allow_missing:
        raise BandMismatchError(
            path,
            f"lacks bands the model was trained with at {missing} nm; add them or pass "
            "--allow-missing-bands (a spectrum-aware encoder accepts band subsets)",
        )
    return [i + 1 for i in keep], waves[keep].astype(np.float32), stats


def _stats_for(waves: np.ndarray, stats_by_sensor: dict[str, BandStats]) -> BandStats | None:
    """The statistics (of one sensor) covering every wavelength, preferring exact sensors."""
    for stats in stats_by_sensor.values():
        known = np.asarray(stats.wavelengths, dtype=float)
        if all(np.abs(known - w).min() <= WAVELENGTH_TOLERANCE_NM for w in waves):
            return stats
    return None


def true_colour_bands(bands: list[int], wavelengths: np.ndarray) -> tuple[int, ...]:
    """1-based input bands closest to red, green and blue (a single band when all are SAR)."""
    optical = [(b, float(w)) for b, w in zip(bands, wavelengths, strict=True) if 350 < w < 1000]
    if not optical:
        return (bands[0],)
    return tuple(min(optical, key=lambda bw: abs(bw[1] - target))[0] for target in (660, 560, 490))

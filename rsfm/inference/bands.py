"""Band selection: which input bands a model gets, by wavelength, and with which statistics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio

from rsfm.band_stats import BandStats
from rsfm.data.errors import BandMismatchError
from rsfm.data.grid import canonical_band_name
from rsfm.sensors import Sensor, get_sensor, rgb_band_indices, sensor_from_raster

if TYPE_CHECKING:
    from rsfm.hub.card import ModelCard

WAVELENGTH_TOLERANCE_NM = 1.0


def card_sensor_names(card: ModelCard | None) -> list[str]:
    """Sensors a card says the model saw: the last stage's first, then earlier stages', then
    those with normalisation statistics only."""
    if card is None:
        return []
    return list(dict.fromkeys([*card.known_sensors(), *card.normalization]))


def input_sensor(path: Path, sensor: str | None, card: ModelCard | None) -> Sensor:
    """The input's band metadata: ``--sensor``, the file's wavelength tags, its RSFM_SENSOR tag,
    or band descriptions / band count matching one sensor of the model card, in that order.

    Args:
        path: Input GeoTIFF.
        sensor: Registered sensor name given by the user, or None.
        card: The model's typed card (its sensors are candidates for a bare file), or None.

    Raises:
        BandMismatchError: Naming the file, when none of these describes its bands.
    """
    card_sensors = card_sensor_names(card)
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
    path: Path, sensor: Sensor, card: ModelCard | None, allow_missing: bool
) -> tuple[list[int], np.ndarray, BandStats | None]:
    """Input bands the model was trained with (1-based indexes), their wavelengths and stats.

    The bands the model knows are those of every training stage and of every sensor with
    normalisation statistics in the card (a head fine-tuned on one sensor keeps the encoder's
    pretraining sensors); the statistics of the input's own sensor are preferred.

    Raises:
        BandMismatchError: When the input lacks bands the model was trained with (unless
            ``allow_missing``) or shares none with it.
    """
    stats_by_sensor = dict(card.normalization) if card is not None else {}
    if sensor.name in stats_by_sensor:  # the input's own sensor first
        stats_by_sensor = {sensor.name: stats_by_sensor.pop(sensor.name), **stats_by_sensor}
    trained = np.array(card.known_wavelengths() if card is not None else [], dtype=float)
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
    stats = _stats_for(waves[keep], stats_by_sensor, own=sensor.name)
    if stats_by_sensor and stats is None:
        raise BandMismatchError(path, "no normalisation statistics of the model cover its bands")
    wanted = stats.wavelengths if stats is not None else _sensor_waves(waves[keep], card)
    missing = [float(w) for w in wanted if np.abs(waves - w).min() > WAVELENGTH_TOLERANCE_NM]
    if missing and not allow_missing:
        raise BandMismatchError(
            path,
            f"lacks bands the model was trained with at {missing} nm; add them or pass "
            "--allow-missing-bands (a spectrum-aware encoder accepts band subsets)",
        )
    return [i + 1 for i in keep], waves[keep].astype(np.float32), stats


def _sensor_waves(waves: np.ndarray, card: ModelCard | None) -> list[float]:
    """Wavelengths of the card's band table sharing most bands with ``waves`` (no stats)."""
    tables = list(card.known_sensors().values()) if card is not None else []
    if not tables:
        return []

    def shared(wavelengths: list[float]) -> int:
        known = np.asarray(wavelengths, dtype=float)
        if known.size == 0:
            return 0
        return sum(np.abs(known - w).min() <= WAVELENGTH_TOLERANCE_NM for w in waves)

    return max(tables, key=lambda table: shared(table.wavelengths)).wavelengths


def _stats_for(
    waves: np.ndarray, stats_by_sensor: dict[str, BandStats], own: str | None = None
) -> BandStats | None:
    """The statistics (of one sensor) covering every wavelength: the input's own sensor if it
    covers them (it comes first), else the covering sensor with the fewest other bands (a
    4-band Landsat L1 file gets the 4-band table, not the 6-band surface-reflectance one)."""
    covering = []
    for order, (name, stats) in enumerate(stats_by_sensor.items()):
        known = np.asarray(stats.wavelengths, dtype=float)
        if all(np.abs(known - w).min() <= WAVELENGTH_TOLERANCE_NM for w in waves):
            if name == own:
                return stats
            covering.append((len(known), order, stats))
    return min(covering, key=lambda item: item[:2])[2] if covering else None


def true_colour_bands(bands: list[int], wavelengths: np.ndarray) -> tuple[int, ...]:
    """1-based input bands closest to red, green and blue (a single band when all are SAR)."""
    return tuple(bands[i] for i in rgb_band_indices(wavelengths))

"""Band selection: which input bands a model gets, by wavelength, and with which statistics.

One rule serves selection and normalisation (documented in docs/tiled_inference.md, "Bands"):

- **Which bands.** A spectrum-aware encoder (a :class:`~rsfm.models.layers.spectral.
  SpectralPatchEmbed`) takes any band whose centre falls in a spectral range it was trained on
  (a range holding a band of the card's training sensors); a wavelength-grid model (the
  hyperspectral ``WavelengthConv2d``) takes any band within two grid steps of a training band;
  any other model (fixed bands) takes a band whose centre lies in the passband of a training
  band (centre +- FWHM / 2, at least +- ``PASSBAND_FLOOR_NM``).
- **Which statistics.** A band uses the card's statistics row whose passband holds its centre,
  from one sensor: the one covering most bands (ties: :func:`_assemble_stats`). A band no row
  covers gets statistics from the input itself (a decimated read), with a notice. The table
  returned is keyed by the input's own wavelengths, so normalisation finds every row exactly.
- **Missing bands.** Training bands of that sensor absent from the input give a notice for a
  spectrum-aware model (it reads band subsets; ``--allow-missing-bands`` silences it) and an
  error for a fixed-band model.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio

from rsfm.band_stats import BandStats
from rsfm.data.errors import BandMismatchError
from rsfm.data.grid import canonical_band_name
from rsfm.sensors import Band, Sensor, get_sensor, rgb_band_indices, sensor_from_raster

if TYPE_CHECKING:
    from torch import nn

    from rsfm.hub.card import ModelCard

PASSBAND_FLOOR_NM = 1.0  # half-width of a band's passband when its FWHM is unknown
GRID_REACH_STEPS = 2.0  # a wavelength-grid model takes bands this many steps from a trained one
INPUT_STATS_PERCENTILES = (1.0, 99.0)


@dataclass
class BandSelection:
    """The bands a model is fed from one input.

    Attributes:
        bands: 1-based band indexes of the input file.
        wavelengths: Their centre wavelengths (nm), float32, as the model receives them.
        stats: Normalisation statistics, one row per selected band keyed by ``wavelengths``
            (None: the card has none, the model takes raw values).
        notices: Messages for the user (input statistics used, training bands missing).
    """

    bands: list[int]
    wavelengths: np.ndarray
    stats: BandStats | None
    notices: list[str] = field(default_factory=list)


def card_sensor_names(card: ModelCard | None) -> list[str]:
    """Sensors a card says the model saw: the last stage's first, then earlier stages', then
    those with normalisation statistics only."""
    if card is None:
        return []
    return list(dict.fromkeys([*card.known_sensors(), *card.normalization]))


# ------------------------------------------------------------------------------ the input's bands
def parse_band_subset(path: Path, spec: str | None) -> list[int] | None:
    """``--bands``: 1-based indexes, ``a-b`` index ranges or band descriptions, comma separated
    (e.g. ``1,2``, ``1-3`` or ``VV,VH``), as file band indexes; None when ``spec`` is None.

    Raises:
        BandMismatchError: Naming the file and the entry it does not have.
    """
    if spec is None:
        return None
    with rasterio.open(path) as ds:
        count, descriptions = ds.count, [canonical_band_name(d or "") for d in ds.descriptions]
    picked: list[int] = []
    for entry in (e.strip() for e in spec.split(",")):
        span = re.fullmatch(r"(\d+)(?:-(\d+))?", entry)
        if span:
            first, last = int(span[1]), int(span[2] or span[1])
            indexes = list(range(first, last + 1))
        elif entry and canonical_band_name(entry) in descriptions:
            indexes = [descriptions.index(canonical_band_name(entry)) + 1]
        else:
            named = [d for d in descriptions if d] or ["none"]
            raise BandMismatchError(
                path, f"--bands {entry!r}: no such band (descriptions: {', '.join(named)})"
            )
        if not indexes or min(indexes) < 1 or max(indexes) > count:
            raise BandMismatchError(path, f"--bands {entry!r}: the file has bands 1..{count}")
        picked.extend(indexes)
    if len(set(picked)) != len(picked):
        raise BandMismatchError(path, f"--bands {spec!r} names a band twice")
    return picked


def parse_wavelengths(spec: str, path: Path | None = None) -> Sensor:
    """``--wavelengths``: per band a centre (``665``) or a passband (``450-800`` nm), comma
    separated, as a custom optical sensor (a passband gives centre and FWHM).

    Raises:
        BandMismatchError: On an entry that is neither (naming ``path`` when given).
    """
    bands = []
    for i, entry in enumerate(e.strip() for e in spec.split(",")):
        match = re.fullmatch(r"(\d+(?:\.\d+)?)(?:\s*-\s*(\d+(?:\.\d+)?))?", entry)
        if not match or (match[2] and float(match[2]) <= float(match[1])):
            raise BandMismatchError(
                path or Path("--wavelengths"),
                f"--wavelengths entry {entry!r} is not a centre (665) or a range (450-800) in nm",
            )
        low, high = float(match[1]), float(match[2] or match[1])
        bands.append(Band(f"W{i + 1}", (low + high) / 2, high - low, 0.0))
    return Sensor("custom", "optical", tuple(bands), f"--wavelengths {spec}")


def input_sensor(
    path: Path,
    sensor: str | None,
    card: ModelCard | None,
    subset: list[int] | None = None,
    wavelengths: str | None = None,
) -> Sensor:
    """The band metadata of the input's bands (of ``subset``, 1-based, when given): a
    ``--wavelengths`` spec, ``--sensor``, the file's wavelength tags, its RSFM_SENSOR tag, or
    band descriptions / band count matching one sensor of the model card, in that order.

    Args:
        path: Input GeoTIFF.
        sensor: Registered sensor name given by the user, or None.
        card: The model's typed card (its sensors are candidates for a bare file), or None.
        subset: File bands the user picked (``--bands``), or None for all.
        wavelengths: A ``--wavelengths`` spec, or None.

    Raises:
        BandMismatchError: Naming the file, when none of these describes its bands.
    """
    card_sensors = card_sensor_names(card)
    with rasterio.open(path) as ds:
        tags, all_descriptions = ds.tags(), [d or "" for d in ds.descriptions]
        picked = subset or list(range(1, ds.count + 1))
    count, descriptions = len(picked), [all_descriptions[b - 1] for b in picked]
    chosen: Sensor | None = None
    if wavelengths is not None:
        chosen = parse_wavelengths(wavelengths, path)
    elif sensor is not None:
        chosen = get_sensor(sensor)
    else:
        try:
            described = sensor_from_raster(path)
            return Sensor(
                described.name,
                described.modality,
                tuple(described.bands[b - 1] for b in picked),
                described.description,
            )
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
            f"{sorted(card_sensors)}, or any of `rsfm data sensors`) or --wavelengths",
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
        hint = "; pick bands with --bands (e.g. --bands 1,2)" if count > len(chosen) else ""
        raise BandMismatchError(
            path, f"{count} bands, but sensor {chosen.name!r} has {len(chosen)} bands{hint}"
        )
    return chosen


# ------------------------------------------------------------------------------ the model's side
def _passband(center: float, fwhm: float) -> tuple[float, float]:
    half = max(float(fwhm or 0.0) / 2.0, PASSBAND_FLOOR_NM)
    return center - half, center + half


def _trained_bands(card: ModelCard | None) -> list[tuple[float, float]]:
    """``(centre, fwhm)`` of every band the card says the model was trained or normalised on."""
    if card is None:
        return []
    bands = [
        (b.wavelength_nm, b.fwhm_nm or 0.0) for t in card.known_sensors().values() for b in t.bands
    ]
    for name, stats in card.normalization.items():
        fwhms = _stats_fwhms(card, name, stats)
        bands += [(float(w), f) for w, f in zip(stats.wavelengths, fwhms, strict=True)]
    return bands


def _stats_fwhms(card: ModelCard | None, name: str, stats: BandStats) -> list[float]:
    """FWHM of each statistics row, from the card's band table of that sensor or the registry
    (0 when neither knows the band)."""
    known: dict[str, float] = {}
    try:
        known = {canonical_band_name(b.name): b.fwhm_nm for b in get_sensor(name).bands}
    except KeyError:
        pass
    table = card.known_sensors().get(name) if card is not None else None
    if table is not None:
        known.update({canonical_band_name(b.name): b.fwhm_nm or 0.0 for b in table.bands})
    return [float(known.get(canonical_band_name(n), 0.0) or 0.0) for n in stats.band_names]


def accepted_intervals(
    model: nn.Module | None, card: ModelCard | None
) -> tuple[str, list[tuple[float, float]]] | None:
    """How the model takes bands: ``(kind, [low, high) intervals in nm)`` with kind
    ``"spectral ranges"``, ``"wavelength grid"`` or ``"passbands"`` (fixed-band); None when the
    card records no training bands (every input band is fed)."""
    trained = _trained_bands(card)
    if not trained:
        return None
    centres = [c for c, _ in trained]
    modules = list(model.modules()) if model is not None else []
    from rsfm.models.layers.spectral import SpectralPatchEmbed

    embed = next((m for m in modules if isinstance(m, SpectralPatchEmbed)), None)
    if embed is not None:
        ranges = [
            (r.min_nm, r.max_nm)
            for r in embed.ranges
            if any(r.min_nm <= c < r.max_nm for c in centres)
        ]
        return "spectral ranges", ranges
    grid_module = sys.modules.get("rsfm.models.hyperspectral")  # imported if the model has one
    grid_type = getattr(grid_module, "WavelengthConv2d", None)
    grid = next((m for m in modules if grid_type and isinstance(m, grid_type)), None)
    if grid is not None:
        reach = GRID_REACH_STEPS * grid.step
        return "wavelength grid", [
            (max(grid.low, c - reach), min(grid.high, c + reach) + 1e-6) for c in centres
        ]
    return "passbands", [(lo, hi + 1e-6) for lo, hi in (_passband(c, f) for c, f in trained)]


def _inside(wavelength: float, intervals: list[tuple[float, float]]) -> bool:
    return any(lo <= wavelength < hi for lo, hi in intervals)


def select_bands(
    path: Path,
    sensor: Sensor,
    card: ModelCard | None,
    allow_missing: bool,
    *,
    model: nn.Module | None = None,
    subset: list[int] | None = None,
) -> tuple[list[int], np.ndarray, BandStats | None]:
    """:func:`match_bands` as ``(bands, wavelengths, stats)`` (notices dropped)."""
    selection = match_bands(path, sensor, card, allow_missing, model=model, subset=subset)
    return selection.bands, selection.wavelengths, selection.stats


def match_bands(
    path: Path,
    sensor: Sensor,
    card: ModelCard | None,
    allow_missing: bool,
    *,
    model: nn.Module | None = None,
    subset: list[int] | None = None,
) -> BandSelection:
    """The input bands ``model`` takes, their wavelengths and statistics (module docstring).

    Args:
        path: Input GeoTIFF.
        sensor: Its band metadata (one band per file band, or per ``subset`` band).
        card: The model's typed card.
        allow_missing: Silence the notice on training bands the input lacks.
        model: The loaded model (how it takes bands); None treats it as fixed-band.
        subset: File bands ``sensor`` describes (1-based), or None for all.

    Raises:
        BandMismatchError: When the model takes none of the input's bands, or a fixed-band
            model lacks some of its bands.
    """
    waves = sensor.wavelengths.astype(float)
    file_bands = subset or list(range(1, len(waves) + 1))
    rule = accepted_intervals(model, card)
    if rule is None:
        keep = list(range(len(waves)))
    else:
        keep = [i for i, w in enumerate(waves) if _inside(w, rule[1])]
    if not keep:
        raise BandMismatchError(
            path,
            f"none of its bands ({waves.tolist()} nm) is a band the model was trained with "
            f"({rule[0] if rule else 'bands'}: {_describe(rule[1]) if rule else '-'})",
        )
    kept = waves[keep]
    names = [sensor.bands[i].name for i in keep]
    notices: list[str] = []
    stats, source = None, None
    if card is not None and card.normalization:
        stats, source, own_rows = _assemble_stats(
            path, card, sensor.name, kept, names, [file_bands[i] for i in keep]
        )
        if not all(own_rows):
            shown = [
                n if "nm" in n.lower() or "nanometer" in n.lower() else f"{n} ({w:g} nm)"
                for n, w, o in zip(names, kept, own_rows, strict=True)
                if not o
            ]
            notices.append(
                f"{path}: the model has no normalisation statistics for {len(shown)} of its "
                f"bands ({', '.join(shown[:6])}{', ...' if len(shown) > 6 else ''}); they are "
                "normalised with the input's own statistics (a decimated read)"
            )
    missing = _missing_bands(card, source, kept)
    if missing:
        if rule is not None and rule[0] == "passbands":
            raise BandMismatchError(
                path, f"lacks bands the model was trained with at {missing} nm; add them"
            )
        if not allow_missing:
            notices.append(
                f"{path}: lacks {len(missing)} band(s) the model was trained with "
                f"({', '.join(f'{w:g}' for w in missing[:6])}{', ...' if len(missing) > 6 else ''}"
                " nm); a spectrum-aware model reads band subsets, but its predictions on them "
                "are less certain (--allow-missing-bands silences this)"
            )
    bands = [file_bands[i] for i in keep]
    return BandSelection(bands, kept.astype(np.float32), stats, notices)


def _describe(intervals: list[tuple[float, float]]) -> str:
    merged: list[list[float]] = []
    for lo, hi in sorted(intervals):
        if merged and lo <= merged[-1][1] + 1e-3:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return ", ".join(f"{lo:.6g}-{hi:.6g} nm" for lo, hi in merged[:8])


def _assemble_stats(
    path: Path,
    card: ModelCard,
    own: str,
    waves: np.ndarray,
    names: list[str],
    file_bands: list[int],
) -> tuple[BandStats, str | None, list[bool]]:
    """Statistics rows for ``waves`` (see the module docstring): the table, the card sensor
    they come from (None: none covers any band) and per band whether the card covered it.

    Sensors rank by bands covered, then the input's own sensor, then its platform (the name
    before the first ``_``, e.g. ``landsat8``), then the summed centre offsets, then the fewest
    bands."""
    candidates = []
    for order, (name, table) in enumerate(card.normalization.items()):
        passbands = [
            _passband(w, f)
            for w, f in zip(table.wavelengths, _stats_fwhms(card, name, table), strict=True)
        ]
        rows = [_nearest_row(w, table.wavelengths, passbands) for w in waves]
        covered = sum(r is not None for r in rows)
        offset = sum(
            abs(table.wavelengths[r] - w) for r, w in zip(rows, waves, strict=True) if r is not None
        )
        platform = name.split("_")[0] != own.split("_")[0]
        rank = (-covered, name != own, platform, round(offset, 3), len(table.wavelengths), order)
        candidates.append((rank, name, rows))
    _, source, rows = min(candidates)
    table = card.normalization[source]
    if all(r is None for r in rows):
        source = None
    own_rows = [r is not None for r in rows]
    fallback = None
    if not all(own_rows):
        fallback = input_band_stats(
            path, [b for b, o in zip(file_bands, own_rows, strict=True) if not o]
        )
    low, high, mean, std, k = [], [], [], [], 0
    for row in rows:
        if row is not None:
            values = (table.low[row], table.high[row], table.mean[row], table.std[row])
        else:
            values = tuple(float(v[k]) for v in fallback)
            k += 1
        for column, value in zip((low, high, mean, std), values, strict=True):
            column.append(value)
    stats = BandStats(
        names,
        [float(w) for w in waves],
        low,
        high,
        mean,
        std,
        table.percentiles,
        sensor=source or "input",
        n_pixels=table.n_pixels,
    )
    return stats, source, own_rows


def _nearest_row(
    wavelength: float, table: list[float], passbands: list[tuple[float, float]]
) -> int | None:
    """The statistics row whose passband holds ``wavelength`` (the nearest centre on overlap)."""
    inside = [j for j, (lo, hi) in enumerate(passbands) if lo <= wavelength <= hi]
    return min(inside, key=lambda j: abs(table[j] - wavelength)) if inside else None


def _missing_bands(card: ModelCard | None, source: str | None, waves: np.ndarray) -> list[float]:
    """Training bands (of the statistics' sensor, else the card's sensor sharing most bands)
    whose passband holds none of ``waves``."""
    if card is None:
        return []
    tables: list[list[tuple[float, float]]] = []
    if source is not None:
        stats = card.normalization[source]
        tables = [list(zip(stats.wavelengths, _stats_fwhms(card, source, stats), strict=True))]
    else:
        tables = [
            [(b.wavelength_nm, b.fwhm_nm or 0.0) for b in t.bands]
            for t in card.known_sensors().values()
        ]
    if not tables:
        return []

    def matched(table: list[tuple[float, float]]) -> list[bool]:
        return [any(lo <= w <= hi for w in waves) for lo, hi in (_passband(c, f) for c, f in table)]

    best = max(tables, key=lambda t: sum(matched(t)))
    return [float(c) for (c, _), hit in zip(best, matched(best), strict=True) if not hit]


def input_band_stats(path: Path, bands: list[int]) -> tuple[np.ndarray, ...]:
    """``(low, high, mean, std)`` per band of the input itself, from a decimated read of its
    valid pixels (the clip range is the 1st..99th percentile, as for training statistics).

    Raises:
        BandMismatchError: When the bands hold no valid pixel.
    """
    from rsfm.inference.input_checks import sample_valid_pixels

    values = sample_valid_pixels(path, bands).astype(np.float64)
    if values.shape[1] == 0:
        raise BandMismatchError(path, f"bands {bands} hold no valid pixel to take statistics of")
    low, high = np.percentile(values, INPUT_STATS_PERCENTILES, axis=1)
    clipped = np.clip(values, low[:, None], high[:, None])
    return low, high, clipped.mean(axis=1), clipped.std(axis=1)


def true_colour_bands(bands: list[int], wavelengths: np.ndarray) -> tuple[int, ...]:
    """1-based input bands closest to red, green and blue (a single band when all are SAR)."""
    return tuple(bands[i] for i in rgb_band_indices(wavelengths))


__all__ = [
    "BandSelection",
    "accepted_intervals",
    "card_sensor_names",
    "input_band_stats",
    "input_sensor",
    "match_bands",
    "parse_band_subset",
    "parse_wavelengths",
    "select_bands",
    "true_colour_bands",
]

"""Registry of real sensors: band centre wavelengths, bandwidths and ground sampling distances.

Optical bands carry their centre wavelength and full width at half maximum (FWHM) in nanometres,
from the agencies' published tables (ESA Sentinel-2 MSI spectral response, USGS Landsat 8/9
OLI/TIRS, USDA NAIP / Leica ADS100, DLR EnMAP, NASA/JPL EMIT, NEON AOP NIS).

SAR convention: radar bands carry the *radar* wavelength in nanometres (C-band 5.405 GHz ->
55,465,763 nm) with a sign for polarisation: co-polarised channels (VV, HH) are positive,
cross-polarised channels (VH, HV) negative. This keeps one float per band in the sample dict,
keeps VV and VH distinguishable, and never collides with an optical wavelength.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPEED_OF_LIGHT_M_S = 299_792_458.0


def radar_wavelength_nm(frequency_ghz: float, polarisation: str) -> float:
    """Signed pseudo-wavelength of a SAR channel (see the module docstring).

    Args:
        frequency_ghz: Radar centre frequency in GHz.
        polarisation: One of VV, HH (co-pol, positive) or VH, HV (cross-pol, negative).

    Returns:
        The radar wavelength in nanometres, negative for cross-polarised channels.
    """
    pol = polarisation.upper()
    if pol not in {"VV", "HH", "VH", "HV"}:
        raise ValueError(f"unknown SAR polarisation {polarisation!r}; expected VV, HH, VH or HV")
    wavelength = SPEED_OF_LIGHT_M_S / (frequency_ghz * 1e9) * 1e9
    return wavelength if pol in {"VV", "HH"} else -wavelength


@dataclass(frozen=True)
class Band:
    """One spectral band.

    Attributes:
        name: Band name as the product names it (e.g. ``B8A``, ``VV``).
        center_nm: Centre wavelength in nm (signed radar wavelength for SAR, see module doc).
        fwhm_nm: Full width at half maximum in nm (0 for SAR).
        gsd_m: Native ground sampling distance in metres.
    """

    name: str
    center_nm: float
    fwhm_nm: float
    gsd_m: float

    @property
    def is_sar(self) -> bool:
        """Whether this is a radar channel (|wavelength| above 1 mm)."""
        return abs(self.center_nm) > 1e6


@dataclass(frozen=True)
class Sensor:
    """A sensor: a named, ordered band table.

    Attributes:
        name: Registry key, e.g. ``sentinel2_l1c``.
        modality: ``optical``, ``sar`` or ``hyperspectral``.
        bands: Bands in the order a product stores them.
        description: One line on what the product is.
    """

    name: str
    modality: str
    bands: tuple[Band, ...]
    description: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)

    @property
    def band_names(self) -> list[str]:
        """Band names in storage order."""
        return [b.name for b in self.bands]

    @property
    def wavelengths(self) -> np.ndarray:
        """Centre wavelengths (nm) as float32, in storage order."""
        return np.array([b.center_nm for b in self.bands], dtype=np.float32)

    @property
    def fwhms(self) -> np.ndarray:
        """Bandwidths (nm) as float32, in storage order."""
        return np.array([b.fwhm_nm for b in self.bands], dtype=np.float32)

    @property
    def gsd(self) -> float:
        """The finest native GSD of the sensor (m)."""
        return min(b.gsd_m for b in self.bands)

    def __len__(self) -> int:
        return len(self.bands)

    def select(self, names: Sequence[str], name: str | None = None) -> Sensor:
        """Return a sensor made of the named bands, in the given order.

        Args:
            names: Band names to keep.
            name: Name of the new sensor (default: ``<self.name>[b1,b2,...]``).

        Raises:
            KeyError: If a name is not a band of this sensor.
        """
        by_name = {b.name.upper(): b for b in self.bands}
        missing = [n for n in names if n.upper() not in by_name]
        if missing:
            raise KeyError(
                f"sensor {self.name!r} has no band(s) {missing}; it has {self.band_names}"
            )
        bands = tuple(by_name[n.upper()] for n in names)
        return Sensor(
            name or f"{self.name}[{','.join(names)}]", self.modality, bands, self.description
        )

    def to_dict(self) -> dict:
        """JSON-ready description (used by model cards and normalisation files)."""
        return {
            "name": self.name,
            "modality": self.modality,
            "bands": [
                {"name": b.name, "center_nm": b.center_nm, "fwhm_nm": b.fwhm_nm, "gsd_m": b.gsd_m}
                for b in self.bands
            ],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Sensor:
        """Inverse of :meth:`to_dict`."""
        bands = tuple(Band(**b) for b in data["bands"])
        return cls(data["name"], data.get("modality", "optical"), bands)


def _bands(rows: Iterable[tuple[str, float, float, float]]) -> tuple[Band, ...]:
    return tuple(Band(n, float(c), float(w), float(g)) for n, c, w, g in rows)


# ESA Sentinel-2 MSI (S2A) spectral response: centre / bandwidth (nm), resolution (m).
_S2_ROWS = [
    ("B01", 442.7, 21.0, 60.0),
    ("B02", 492.4, 66.0, 10.0),
    ("B03", 559.8, 36.0, 10.0),
    ("B04", 664.6, 31.0, 10.0),
    ("B05", 704.1, 15.0, 20.0),
    ("B06", 740.5, 15.0, 20.0),
    ("B07", 782.8, 20.0, 20.0),
    ("B08", 832.8, 106.0, 10.0),
    ("B8A", 864.7, 21.0, 20.0),
    ("B09", 945.1, 20.0, 60.0),
    ("B10", 1373.5, 31.0, 60.0),
    ("B11", 1613.7, 91.0, 20.0),
    ("B12", 2202.4, 175.0, 20.0),
]

# USGS Landsat 8/9 OLI + TIRS band limits (um) -> centre / width (nm).
_LANDSAT_ROWS = [
    ("B1", 443.0, 20.0, 30.0),
    ("B2", 482.5, 65.0, 30.0),
    ("B3", 562.5, 75.0, 30.0),
    ("B4", 655.0, 50.0, 30.0),
    ("B5", 865.0, 40.0, 30.0),
    ("B6", 1610.0, 100.0, 30.0),
    ("B7", 2200.0, 200.0, 30.0),
    ("B8", 590.0, 180.0, 15.0),
    ("B9", 1375.0, 30.0, 30.0),
    ("B10", 10895.0, 590.0, 100.0),
    ("B11", 12005.0, 1010.0, 100.0),
]

# NAIP 4-band (Leica ADS100 filters), 0.6 m since 2018 (older years 1 m).
_NAIP_ROWS = [
    ("R", 635.0, 32.0, 0.6),
    ("G", 555.0, 60.0, 0.6),
    ("B", 465.0, 60.0, 0.6),
    ("N", 845.0, 74.0, 0.6),
]

# A generic RGB camera (broad Bayer-filter responses); GSD depends on the platform.
_RGB_ROWS = [
    ("R", 640.0, 100.0, 1.0),
    ("G", 545.0, 100.0, 1.0),
    ("B", 470.0, 80.0, 1.0),
]

_S1_FREQ_GHZ = 5.405


def _uniform_hyperspectral(
    prefix: str, start: float, stop: float, count: int, fwhm: float, gsd: float
) -> tuple[Band, ...]:
    centres = np.linspace(start, stop, count)
    return tuple(
        Band(f"{prefix}{i + 1:03d}", round(float(c), 3), fwhm, gsd) for i, c in enumerate(centres)
    )


def _enmap_nominal() -> tuple[Band, ...]:
    # EnMAP HSI: VNIR 91 bands 418-993 nm (~6.5 nm), SWIR 133 bands 902-2445 nm (~10 nm).
    # Real products carry exact per-band wavelength/fwhm tags; sensor_from_raster reads those.
    vnir = np.linspace(418.24, 993.0, 91)
    swir = np.linspace(902.0, 2445.5, 133)
    centres = np.concatenate([vnir, swir])
    return tuple(
        Band(f"B{i + 1:03d}", round(float(c), 3), 7.0 if i < 91 else 10.0, 30.0)
        for i, c in enumerate(centres)
    )


SENSORS: dict[str, Sensor] = {}


def register_sensor(sensor: Sensor) -> Sensor:
    """Add a sensor to the registry (names and aliases are case-insensitive)."""
    for key in (sensor.name, *sensor.aliases):
        SENSORS[key.lower()] = sensor
    return sensor


register_sensor(
    Sensor(
        "sentinel2_l1c",
        "optical",
        _bands(_S2_ROWS),
        "Sentinel-2 MSI Level-1C, 13 bands B01..B12 incl. B8A and B10",
        aliases=("sentinel2", "s2", "s2_l1c"),
    )
)
register_sensor(
    Sensor(
        "sentinel2_l2a",
        "optical",
        tuple(b for b in _bands(_S2_ROWS) if b.name != "B10"),
        "Sentinel-2 MSI Level-2A, 12 bands (no B10 cirrus)",
        aliases=("s2_l2a",),
    )
)
register_sensor(
    Sensor(
        "sentinel1_grd",
        "sar",
        (
            Band("VV", radar_wavelength_nm(_S1_FREQ_GHZ, "VV"), 0.0, 10.0),
            Band("VH", radar_wavelength_nm(_S1_FREQ_GHZ, "VH"), 0.0, 10.0),
        ),
        "Sentinel-1 C-band GRD, VV and VH backscatter (dB)",
        aliases=("sentinel1", "s1"),
    )
)
register_sensor(
    Sensor(
        "landsat8_oli_tirs",
        "optical",
        _bands(_LANDSAT_ROWS),
        "Landsat 8/9 OLI + TIRS, 11 bands",
        aliases=("landsat8", "landsat9", "l8", "l9"),
    )
)
register_sensor(
    Sensor(
        "landsat8_sr",
        "optical",
        _bands(_LANDSAT_ROWS[1:7]),
        "Landsat 8/9 Collection-2 surface reflectance, bands B2..B7",
        aliases=("landsat8_l2", "l8_sr"),
    )
)
register_sensor(Sensor("naip", "optical", _bands(_NAIP_ROWS), "USDA NAIP aerial RGBN"))
register_sensor(Sensor("rgb", "optical", _bands(_RGB_ROWS), "Generic RGB camera"))
register_sensor(
    Sensor(
        "enmap",
        "hyperspectral",
        _enmap_nominal(),
        "EnMAP HSI L2A, 224 bands 418-2445 nm (nominal; file tags take precedence)",
    )
)
register_sensor(
    Sensor(
        "emit",
        "hyperspectral",
        _uniform_hyperspectral("B", 381.0, 2493.0, 285, 8.5, 60.0),
        "EMIT imaging spectrometer, 285 bands 381-2493 nm, 60 m",
    )
)
register_sensor(
    Sensor(
        "neon_aop",
        "hyperspectral",
        _uniform_hyperspectral("B", 383.0, 2512.0, 426, 5.0, 1.0),
        "NEON AOP NIS imaging spectrometer, 426 bands 380-2510 nm, 1 m",
    )
)

# ----------------------------------------------------------------- catalogue: aerial / VHR / HSI
# Maxar WorldView-2 effective centre wavelengths and effective bandwidths (nm), from DigitalGlobe's
# technical note "Radiometric Use of WorldView-2 Imagery" (Updike & Comp, 2010). The SpaceNet 6
# MS product carries four of the eight bands, blue, green, red, NIR1, in that order (checked on
# the data: green > red and NIR highest over vegetation); GSD at nadir 1.84 m (MS), 0.46 m (pan).
_WV2_MS4_ROWS = [
    ("Blue", 477.9, 54.0, 1.84),
    ("Green", 546.2, 61.8, 1.84),
    ("Red", 658.8, 58.5, 1.84),
    ("NIR1", 831.3, 100.4, 1.84),
]
register_sensor(
    Sensor(
        "worldview2_ms4",
        "optical",
        _bands(_WV2_MS4_ROWS),
        "Maxar WorldView-2 multispectral, 4 of its 8 bands (blue, green, red, NIR1), 1.84 m",
    )
)
# Panchromatic bands: Landsat 8/9 OLI B8 (503-676 nm, 15 m; USGS Landsat 8 Data Users
# Handbook) and a generic 450-800 nm pan band (WorldView-, Pleiades-, SPOT-class) for files
# that say nothing else; `--wavelengths 450-800` describes any other one.
register_sensor(
    Sensor(
        "landsat8_pan",
        "optical",
        _bands([("B8", 589.5, 173.0, 15.0)]),
        "Landsat 8/9 OLI panchromatic band B8 (503-676 nm), 15 m",
        aliases=("landsat9_pan", "l8_pan"),
    )
)
register_sensor(
    Sensor(
        "pan",
        "optical",
        _bands([("PAN", 625.0, 350.0, 0.5)]),
        "Generic panchromatic band, 450-800 nm (VHR class)",
        aliases=("panchromatic",),
    )
)
register_sensor(
    Sensor(
        "worldview2_pan",
        "optical",
        _bands([("PAN", 632.2, 284.6, 0.46)]),
        "Maxar WorldView-2 panchromatic (450-800 nm), 0.46 m",
    )
)

# Capella Space X-band SAR: centre frequency 9.65 GHz (Capella's X band spans 9.4-9.9 GHz);
# quad-pol channels in the order SpaceNet 6 ships them.
_CAPELLA_FREQ_GHZ = 9.65
register_sensor(
    Sensor(
        "capella_x_sar",
        "sar",
        tuple(
            Band(pol, radar_wavelength_nm(_CAPELLA_FREQ_GHZ, pol), 0.0, 2.5)
            for pol in ("HH", "HV", "VH", "VV")
        ),
        "Capella X-band SAR (9.65 GHz) quad-pol HH, HV, VH, VV backscatter (dB), 2.5 m grid",
    )
)


# Band subsets of Landsat 8 products of the datasets catalogue (registered here, so
# `--sensor landsat8_l1_rgbn` works without importing the catalogue).
register_sensor(
    Sensor(
        "landsat8_oli_tirs_nopan",
        "optical",
        SENSORS["landsat8_oli_tirs"]
        .select(["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11"])
        .bands,
        "Landsat 8/9 OLI + TIRS L1 without the 15 m pan band B8 (10 bands)",
    )
)
register_sensor(
    Sensor(
        "landsat8_l1_rgbn",
        "optical",
        SENSORS["landsat8_oli_tirs"].select(["B2", "B3", "B4", "B5"]).bands,
        "Landsat 8 OLI L1 blue, green, red, NIR (B2..B5)",
    )
)


def _without(bands: tuple[Band, ...], removed_1based: Iterable[int]) -> tuple[Band, ...]:
    drop = set(removed_1based)
    return tuple(b for i, b in enumerate(bands, start=1) if i not in drop)


# NEON NIS as cropped by weecology/DeepTreeAttention (src/Hyperspectral.py, generate_raster with
# bands="All"): of the 426 bands it keeps 0-based 0..424 minus 192..209, 283..314 and 419..424,
# i.e. 369 bands; the crops carry no wavelengths, so the nominal neon_aop centres are used.
register_sensor(
    Sensor(
        "neon_aop_369",
        "hyperspectral",
        _without(
            SENSORS["neon_aop"].bands,
            [*range(193, 211), *range(284, 316), *range(420, 427)],
        ),
        "NEON AOP NIS, 369 of 426 bands (water-absorption 1345-1430, 1800-1956 nm and the last "
        "7 bands removed as DeepTreeAttention crops them); nominal 5 nm centres, 1 m",
    )
)

# AVIRIS (NASA/JPL): 224 channels over ~400-2500 nm. Purdue's Indian Pines cube (Baumgardner,
# Biehl, Landgrebe 1992 flight) has 220 of them; the "corrected" 200-band cube drops 1-based
# bands [104-108], [150-163] and 220 of those 220 (water absorption). The file carries no
# wavelengths: ASSUMED evenly spaced 400-2500 nm over the 220 bands (~9.6 nm, the nominal
# "10 nm" of AVIRIS); the real 1992 band centres differ by a few nm.
register_sensor(
    Sensor(
        "aviris_indian_pines",
        "hyperspectral",
        _without(
            _uniform_hyperspectral("B", 400.0, 2500.0, 220, 10.0, 20.0),
            [*range(104, 109), *range(150, 164), 220],
        ),
        "AVIRIS Indian Pines corrected, 200 bands, ASSUMED nominal even spacing 400-2500 nm "
        "over the 220-band cube (~9.6 nm; true 1992 centres differ by a few nm), 20 m",
    )
)
# Jasper Ridge (AVIRIS, 224 channels 380-2500 nm as its distributors state): the 198-band
# version drops 1-based bands 1-3, 108-112, 154-166 and 220-224 (the file's SlectBands).
register_sensor(
    Sensor(
        "aviris_jasper_ridge",
        "hyperspectral",
        _without(
            _uniform_hyperspectral("B", 380.0, 2500.0, 224, 10.0, 20.0),
            [1, 2, 3, *range(108, 113), *range(154, 167), *range(220, 225)],
        ),
        "AVIRIS Jasper Ridge, 198 of 224 bands, ASSUMED nominal even spacing 380-2500 nm "
        "(~9.5 nm); 20 m",
    )
)

# MUUFL Gulfport ITRES CASI-1500 (Gader et al. 2013): the 72 band centres stored in the
# GatorSense .mat files (``wavelengths``, 367.7-1043.4 nm, ~9.5 nm apart); FWHM is not stored,
# taken as the band spacing. ~1 m (0.54 x 1.0 m native).
_MUUFL_CENTRES = [
    367.7, 377.3, 386.8, 396.3, 405.8, 415.4, 424.9, 434.4, 443.9, 453.5, 463.0, 472.5,
    482.0, 491.5, 501.0, 510.6, 520.1, 529.6, 539.1, 548.6, 558.1, 567.6, 577.2, 586.7,
    596.2, 605.7, 615.2, 624.7, 634.2, 643.8, 653.3, 662.8, 672.3, 681.8, 691.3, 700.8,
    710.3, 719.8, 729.4, 738.9, 748.4, 757.9, 767.4, 776.9, 786.4, 795.9, 805.5, 815.0,
    824.5, 834.0, 843.5, 853.0, 862.5, 872.1, 881.6, 891.1, 900.6, 910.1, 919.6, 929.2,
    938.7, 948.2, 957.7, 967.2, 976.8, 986.3, 995.8, 1005.3, 1014.8, 1024.4, 1033.9, 1043.4,
]  # fmt: skip
register_sensor(
    Sensor(
        "muufl_casi",
        "hyperspectral",
        tuple(Band(f"B{i + 1:02d}", c, 9.5, 1.0) for i, c in enumerate(_MUUFL_CENTRES)),
        "MUUFL Gulfport CASI-1500, 72 bands 367.7-1043.4 nm (centres from the data files), ~1 m",
    )
)


def get_sensor(name: str | Sensor) -> Sensor:
    """Look a sensor up by name or alias.

    Raises:
        KeyError: With the list of known sensors, if the name is unknown.
    """
    if isinstance(name, Sensor):
        return name
    try:
        return SENSORS[name.lower()]
    except KeyError:
        known = sorted({s.name for s in SENSORS.values()})
        raise KeyError(f"unknown sensor {name!r}; known sensors: {known}") from None


def list_sensors() -> list[str]:
    """Names of all registered sensors (no aliases)."""
    return sorted({s.name for s in SENSORS.values()})


_DESC_NM = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(nanometers|nm|micrometers|um|µm)", re.IGNORECASE)


def sensor_from_raster(path: str | Path, name: str | None = None) -> Sensor:
    """Describe a sensor from a GeoTIFF's own band metadata.

    Reads, per band, GDAL/ENVI-style ``wavelength`` / ``fwhm`` / ``wavelength_units`` tags, or a
    wavelength written in the band description (``"band 1 (418.24 Nanometers)"``). GSD comes from
    the raster's transform.

    Args:
        path: GeoTIFF path.
        name: Sensor name (default: the file stem).

    Raises:
        ValueError: Naming the file, if any band has no wavelength metadata.
    """
    import rasterio

    path = Path(path)
    bands = []
    with rasterio.open(path) as ds:
        gsd = float(abs(ds.res[0]))
        for i in range(1, ds.count + 1):
            tags = {k.lower(): v for k, v in ds.tags(i).items()}
            desc = ds.descriptions[i - 1] or ""
            center = None
            scale = 1.0
            units = tags.get("wavelength_units", "nanometers").lower()
            if units in {"micrometers", "um", "µm", "micrometer"}:
                scale = 1000.0
            if "wavelength" in tags:
                center = float(tags["wavelength"]) * scale
            else:
                m = _DESC_NM.search(desc)
                if m:
                    unit_scale = 1.0 if m.group(2).lower() in {"nanometers", "nm"} else 1000.0
                    center = float(m.group(1)) * unit_scale
            if center is None:
                raise ValueError(
                    f"{path}: band {i} has no wavelength metadata (no 'wavelength' tag and no "
                    "wavelength in its description); pass a registered sensor instead"
                )
            fwhm = float(tags["fwhm"]) * scale if "fwhm" in tags else 0.0
            bands.append(Band(desc or f"B{i:03d}", center, fwhm, gsd))
    modality = "hyperspectral" if len(bands) > 30 else "optical"
    return Sensor(name or path.stem, modality, tuple(bands), f"described from {path.name}")


def bad_band_mask(path: str | Path) -> np.ndarray:
    """Per-band good-band flags from ENVI-style ``bbl`` tags (True = good; all True if absent)."""
    import rasterio

    with rasterio.open(path) as ds:
        flags = []
        for i in range(1, ds.count + 1):
            value = ds.tags(i).get("bbl")
            flags.append(True if value is None else float(value) != 0.0)
    return np.array(flags, dtype=bool)


RGB_TARGETS_NM = (660.0, 560.0, 490.0)


def rgb_band_indices(wavelengths: Sequence[float] | np.ndarray) -> list[int]:
    """0-based bands nearest red, green and blue among the optical ones (350-1000 nm), for a
    true-colour picture; the first finite band when there is none (SAR). NaN = padded band."""
    waves = np.asarray(wavelengths, dtype=float)
    finite = np.isfinite(waves)
    optical = np.flatnonzero(finite & (waves > 350.0) & (waves < 1000.0))
    if optical.size == 0:
        return [int(np.flatnonzero(finite)[0])]
    return [int(optical[np.abs(waves[optical] - t).argmin()]) for t in RGB_TARGETS_NM]

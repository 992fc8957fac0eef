"""Land-cover classes and their physics for the synthetic world.

Surface reflectance spectra are smooth functions of wavelength (350-2600 nm) built from a few
physical components, shaped after library spectra (USGS splib07, ECOSTRESS): chlorophyll
absorption and the red edge of leaves, liquid-water absorption (970/1200/1450/1940 nm),
monotonic soils, flat grey urban materials, dark water. Each class has a base spectrum and three
linear variation modes (brightness, a class-specific condition ``u`` and moisture ``v``) so that
per-pixel spectra are ``base + b*mode_b + u*mode_u + v*mode_v`` and band values stay linear.

Band values are spectra averaged over a Gaussian spectral response (centre, FWHM), so any band
table can be simulated. Thermal bands get per-class brightness temperatures (K); SAR bands get
per-class backscatter (dB). Top-of-atmosphere products (Level-1C) add a simple atmosphere.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np
from scipy.interpolate import PchipInterpolator

from rsfm.sensors import Band, Sensor, get_sensor


class LandCover(IntEnum):
    """Land-cover class ids of the synthetic world (values of ``labels.tif``)."""

    WATER = 0
    FOREST = 1
    GRASSLAND = 2
    CROPLAND = 3
    BUILT_UP = 4
    BARE_SOIL = 5
    WETLAND = 6


NUM_CLASSES = len(LandCover)
CLASS_NAMES: tuple[str, ...] = tuple(c.name.lower() for c in LandCover)
# Display colours (RGB), close to ESA WorldCover's legend.
CLASS_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 100, 200),  # water
    (0, 100, 0),  # forest
    (255, 255, 76),  # grassland
    (240, 150, 255),  # cropland
    (250, 0, 0),  # built-up
    (180, 180, 180),  # bare soil
    (0, 150, 160),  # wetland
)
VEGETATION_CLASSES = (LandCover.FOREST, LandCover.GRASSLAND, LandCover.CROPLAND)

WAVELENGTH_GRID_NM = np.arange(350.0, 2601.0, 1.0)
THERMAL_MIN_NM = 3000.0
N_MODES = 4  # base, brightness, condition u, moisture v

# Top-of-atmosphere (Level-1C) products carry the atmosphere; the rest are surface reflectance.
TOA_SENSORS = frozenset({"sentinel2_l1c", "landsat8_oli_tirs"})


def band_kind(band: Band) -> str:
    """``"sar"``, ``"thermal"`` or ``"optical"`` for a band (by its signed wavelength)."""
    if band.is_sar:
        return "sar"
    if band.center_nm >= THERMAL_MIN_NM:
        return "thermal"
    if not WAVELENGTH_GRID_NM[0] <= band.center_nm <= WAVELENGTH_GRID_NM[-1]:
        raise ValueError(
            f"band {band.name!r} at {band.center_nm} nm is outside the simulated optical range "
            f"{WAVELENGTH_GRID_NM[0]:.0f}-{WAVELENGTH_GRID_NM[-1]:.0f} nm and is not thermal"
        )
    return "optical"


# ----------------------------------------------------------------------------- components


def _gauss(wl: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((wl - centre) / sigma) ** 2)


def _sigmoid(wl: np.ndarray, centre: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(wl - centre) / width))


# Liquid-water absorption coefficient (1/cm), after Hale & Querry (1973) / Kou et al. (1993).
_WATER_ABS_ANCHORS = np.array(
    [
        (350, 1e-4),
        (500, 3e-4),
        (700, 6e-3),
        (800, 2e-2),
        (900, 7e-2),
        (970, 0.45),
        (1050, 0.2),
        (1100, 0.18),
        (1200, 1.05),
        (1250, 0.9),
        (1350, 3.0),
        (1400, 12.0),
        (1450, 30.0),
        (1500, 20.0),
        (1550, 10.0),
        (1650, 5.5),
        (1750, 8.0),
        (1800, 8.0),
        (1850, 15.0),
        (1900, 75.0),
        (1940, 115.0),
        (2000, 70.0),
        (2100, 25.0),
        (2200, 17.0),
        (2300, 22.0),
        (2400, 50.0),
        (2500, 90.0),
        (2600, 150.0),
    ]  # fmt: skip
)


def water_absorption(wl: np.ndarray) -> np.ndarray:
    """Liquid-water absorption coefficient (1/cm), log-interpolated between anchor points."""
    log_k = PchipInterpolator(_WATER_ABS_ANCHORS[:, 0], np.log(_WATER_ABS_ANCHORS[:, 1]))
    return np.exp(log_k(np.clip(wl, 350.0, 2600.0)))


def _pchip(anchors: list[tuple[float, float]], wl: np.ndarray) -> np.ndarray:
    points = np.asarray(anchors, dtype=np.float64)
    return PchipInterpolator(points[:, 0], points[:, 1], extrapolate=True)(wl)


def vegetation_reflectance(
    wl: np.ndarray,
    chlorophyll: float = 1.4,
    nir: float = 0.42,
    water_cm: float = 0.06,
    brown: float = 0.0,
) -> np.ndarray:
    """Canopy reflectance: chlorophyll-absorbing visible, red edge, NIR plateau, water dips.

    Args:
        wl: Wavelengths (nm).
        chlorophyll: Relative pigment load (1.4 for a healthy canopy).
        nir: NIR plateau reflectance.
        water_cm: Effective liquid-water path (cm) setting the 1450/1940 nm dip depths.
        brown: Fraction of dry, senescent material (0-1).
    """
    pigment = 1.6 * _gauss(wl, 440, 45) + 1.4 * _gauss(wl, 672, 22) + 0.45
    visible = 0.12 * np.exp(-chlorophyll * pigment) + 0.008
    edge = _sigmoid(wl, 700.0 + 12.0 * chlorophyll, 11.0)
    dry_matter = 1.0 - 0.22 * np.clip((wl - 1100.0) / 1400.0, 0.0, 1.0)
    plateau = nir * dry_matter * np.exp(-water_absorption(wl) * water_cm)
    green = visible * (1.0 - edge) + plateau * edge + 0.01
    dry = dry_vegetation_reflectance(wl)
    return (1.0 - brown) * green + brown * dry


def dry_vegetation_reflectance(wl: np.ndarray) -> np.ndarray:
    """Senescent grass / litter: monotonic rise with cellulose-lignin dips near 2100/2300 nm."""
    rise = 0.06 + 0.34 * _sigmoid(wl, 640.0, 90.0)
    lignin = 1.0 - 0.18 * _gauss(wl, 2100, 40) - 0.12 * _gauss(wl, 2300, 35)
    water = np.exp(-water_absorption(wl) * 0.006)
    return rise * lignin * water


def soil_reflectance(wl: np.ndarray, brightness: float = 1.0, moisture: float = 0.2) -> np.ndarray:
    """Bare soil: smooth monotonic rise, iron-oxide shoulder, clay and moisture dips.

    Args:
        wl: Wavelengths (nm).
        brightness: Multiplier of the dry-soil curve (mineralogy, organic matter).
        moisture: 0 (dry) to 1 (wet); darkens and deepens the water dips.
    """
    rise = 0.05 + 0.30 * (1.0 - np.exp(-(wl - 350.0) / 450.0))
    iron = 1.0 - 0.12 * _gauss(wl, 480, 60) - 0.04 * _gauss(wl, 900, 80)
    clay = 1.0 - 0.08 * _gauss(wl, 2205, 25) - 0.05 * _gauss(wl, 1410, 20)
    water = np.exp(-water_absorption(wl) * 0.012 * moisture)
    return brightness * (1.0 - 0.35 * moisture) * rise * iron * clay * water


def water_reflectance(wl: np.ndarray, turbidity: float = 0.3, glint: float = 0.004) -> np.ndarray:
    """Water body: low blue-green peak, near zero beyond 900 nm; sediment raises green-red.

    Args:
        wl: Wavelengths (nm).
        turbidity: Suspended sediment load (0 clear to 1 turbid).
        glint: Spectrally flat surface reflection.
    """
    clear = _pchip(
        [(350, 0.040), (450, 0.045), (500, 0.042), (550, 0.035), (600, 0.022), (650, 0.015),
         (700, 0.009), (750, 0.005), (800, 0.003), (900, 0.0015), (1000, 0.001), (2600, 0.0005)],
        wl,
    )  # fmt: skip
    sediment = 0.05 * _gauss(wl, 600, 90) * np.exp(-water_absorption(wl) * 0.5) + 0.012 * _gauss(
        wl, 810, 30
    )
    return np.clip(clear, 0.0, None) + turbidity * sediment + glint


def builtup_reflectance(
    wl: np.ndarray, concrete: float = 0.35, vegetation: float = 0.08
) -> np.ndarray:
    """Urban mixture: asphalt (dark, slowly rising), concrete (bright grey), tile roofs, trees.

    Args:
        wl: Wavelengths (nm).
        concrete: Fraction of bright concrete / roofs (the rest is asphalt and tiles).
        vegetation: Fraction of street trees and lawns.
    """
    asphalt = 0.07 + 0.05 * (wl - 350.0) / 2250.0 - 0.01 * _gauss(wl, 2300, 60)
    concrete_curve = 0.24 + 0.06 * _sigmoid(wl, 500.0, 80.0) - 0.04 * _gauss(wl, 2330, 40)
    tiles = 0.08 + 0.22 * _sigmoid(wl, 580.0, 25.0) - 0.03 * _gauss(wl, 870, 80)
    built = (1.0 - concrete) * (0.8 * asphalt + 0.2 * tiles) + concrete * concrete_curve
    return (1.0 - vegetation) * built + vegetation * vegetation_reflectance(wl)


def class_reflectance(cls: int, wl: np.ndarray, u: float = 0.0, v: float = 0.0) -> np.ndarray:
    """Surface reflectance of a class at condition ``u`` and moisture ``v`` (both ~N(0, 1)).

    ``u`` means: water turbidity, forest/grass/wetland vigour, crop growth stage, urban
    concrete share, soil brightness. ``v`` is moisture (or wetland open-water share).
    """
    cls = LandCover(cls)
    if cls == LandCover.WATER:
        return water_reflectance(wl, turbidity=0.3 + 0.25 * u, glint=0.004 + 0.002 * v)
    if cls == LandCover.FOREST:
        return vegetation_reflectance(wl, 1.5 + 0.2 * u, 0.34 + 0.04 * u, 0.07 + 0.015 * v)
    if cls == LandCover.GRASSLAND:
        return vegetation_reflectance(wl, 1.3, 0.42 + 0.03 * u, 0.05 + 0.015 * v, 0.2 - 0.1 * u)
    if cls == LandCover.CROPLAND:
        crop = vegetation_reflectance(wl, 1.5, 0.5, 0.06 + 0.01 * v)
        green_fraction = 0.68 + 0.22 * u
        soil = soil_reflectance(wl, 0.8, 0.45 + 0.15 * v)
        return green_fraction * crop + (1.0 - green_fraction) * soil
    if cls == LandCover.BUILT_UP:
        return builtup_reflectance(wl, 0.35 + 0.15 * u, 0.08 + 0.03 * v)
    if cls == LandCover.BARE_SOIL:
        return soil_reflectance(wl, 1.0 + 0.12 * u, 0.2 + 0.12 * v)
    # Wetland: emergent vegetation over shallow water and wet soil.
    veg_share = 0.5 + 0.12 * u
    water_share = 0.3 + 0.1 * v
    veg = vegetation_reflectance(wl, 1.3, 0.32, 0.08)
    return (
        veg_share * veg
        + water_share * water_reflectance(wl, 0.5)
        + (1.0 - veg_share - water_share) * soil_reflectance(wl, 0.7, 0.8)
    )


BRIGHTNESS_VARIATION = 0.1  # relative illumination / albedo change per unit of the b field


def class_spectral_modes(wl: np.ndarray = WAVELENGTH_GRID_NM) -> np.ndarray:
    """Per-class base spectrum and its linear variation modes.

    Returns:
        float64 [NUM_CLASSES, 4, len(wl)]: base, brightness mode, ``u`` mode, ``v`` mode.
    """
    modes = np.empty((NUM_CLASSES, N_MODES, wl.size))
    for cls in LandCover:
        base = class_reflectance(cls, wl)
        modes[cls, 0] = base
        modes[cls, 1] = BRIGHTNESS_VARIATION * base
        modes[cls, 2] = 0.5 * (class_reflectance(cls, wl, u=1) - class_reflectance(cls, wl, u=-1))
        modes[cls, 3] = 0.5 * (class_reflectance(cls, wl, v=1) - class_reflectance(cls, wl, v=-1))
    return modes


# ----------------------------------------------------------------------------- atmosphere


def _rayleigh_depth(wl: np.ndarray) -> np.ndarray:
    return 0.0088 * (wl / 1000.0) ** -4.05


def _aerosol_depth(wl: np.ndarray, aod550: float = 0.1) -> np.ndarray:
    return aod550 * (wl / 550.0) ** -1.3


def gas_transmittance(wl: np.ndarray) -> np.ndarray:
    """Two-way gaseous transmittance: O2-A, water vapour (940/1130/1380/1870 nm) and CO2."""
    # (centre nm, sigma nm, depth at centre) of the main absorption bands, mid-latitude summer.
    bands = [
        (760, 3.0, 0.6), (820, 15.0, 0.1), (940, 25.0, 0.55), (1135, 30.0, 0.6),
        (1380, 45.0, 0.995), (1870, 60.0, 0.995), (2010, 10.0, 0.3), (2060, 10.0, 0.3),
    ]  # fmt: skip
    optical_depth = sum(-np.log(1.0 - d) * _gauss(wl, c, s) for c, s, d in bands)
    optical_depth = optical_depth + 0.4 * _sigmoid(wl, 2500.0, 40.0)
    return np.exp(-optical_depth)


def atmosphere(wl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-of-atmosphere model ``rho_toa = path + transmittance * rho_surface``.

    Returns:
        (path reflectance, total two-way transmittance), each shaped like ``wl``.
    """
    rayleigh, aerosol = _rayleigh_depth(wl), _aerosol_depth(wl)
    airmass = 2.2
    transmittance = np.exp(-(0.5 * rayleigh + 0.3 * aerosol) * airmass) * gas_transmittance(wl)
    path = (0.12 * rayleigh + 0.08 * aerosol) * np.sqrt(gas_transmittance(wl))
    return path, transmittance


# ----------------------------------------------------------------------------- band models

# Brightness temperature (K): base, per unit b, u, v.  Sunlit urban and soil are warmest.
THERMAL_TABLE_K = np.array(
    [
        (291.0, 0.0, 0.5, -0.5),  # water
        (295.0, -0.5, -1.0, -1.0),  # forest
        (299.0, -0.5, -1.5, -1.5),  # grassland
        (298.0, -0.5, -2.5, -1.5),  # cropland
        (306.0, -1.0, -1.0, -1.0),  # built-up
        (309.0, -1.0, 0.5, -2.5),  # bare soil
        (293.0, -0.5, 0.5, -1.5),  # wetland
    ]
)
THERMAL_BAND_OFFSET_K_PER_UM = -0.6  # split-window: longer-wave band reads cooler (water vapour)

# Sentinel-1 C-band sigma0 (dB), VV then VH: base, per unit u, per unit v.
SAR_TABLE_DB = np.array(
    [
        [(-21.0, 1.0, 0.3), (-28.0, 0.6, 0.2)],  # water: wind roughening
        [(-7.5, 0.5, 0.8), (-13.5, 0.6, 0.6)],  # forest: volume scattering
        [(-10.5, 1.0, 1.0), (-17.5, 0.8, 0.8)],  # grassland
        [(-10.0, 1.2, 1.2), (-16.5, 1.5, 0.8)],  # cropland: growth raises VH
        [(1.0, 2.5, 0.0), (-7.0, 2.0, 0.0)],  # built-up: double bounce
        [(-13.0, 1.5, 1.5), (-22.0, 1.0, 1.2)],  # bare soil: roughness and moisture
        [(-9.0, 1.5, 1.0), (-18.0, 1.0, 0.8)],  # wetland: flooded vegetation
    ]
)


def gaussian_response(band: Band, wl: np.ndarray = WAVELENGTH_GRID_NM) -> np.ndarray:
    """Normalised Gaussian spectral response of an optical band on ``wl`` (sums to 1).

    A zero or sub-nanometre FWHM gives linear-interpolation weights at the centre.
    """
    # A Gaussian SRF average is three lines; a spectral-library dependency is not worth it.
    sigma = band.fwhm_nm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    if sigma < 0.5:
        weights = np.interp(wl, [band.center_nm - 1, band.center_nm, band.center_nm + 1], [0, 1, 0])
    else:
        weights = _gauss(wl, band.center_nm, sigma)
    return weights / weights.sum()


def optical_band_matrix(sensor: str | Sensor, toa: bool | None = None) -> np.ndarray:
    """Per-class band values of every optical band of a sensor, for each variation mode.

    Args:
        sensor: Registry name or a :class:`~rsfm.sensors.Sensor` (any band table).
        toa: Apply the atmosphere (default: for Level-1C sensors in ``TOA_SENSORS``).

    Returns:
        float64 [NUM_CLASSES, 4, n_bands]; non-optical bands are zero. Mode 0 of a TOA product
        includes the path reflectance (added to the base only).
    """
    sensor = get_sensor(sensor)
    toa = sensor.name in TOA_SENSORS if toa is None else toa
    modes = class_spectral_modes()
    path, transmittance = atmosphere(WAVELENGTH_GRID_NM)
    matrix = np.zeros((NUM_CLASSES, N_MODES, len(sensor)))
    for index, band in enumerate(sensor.bands):
        if band_kind(band) != "optical":
            continue
        weights = gaussian_response(band)
        if toa:
            matrix[:, :, index] = (modes * transmittance) @ weights
            matrix[:, 0, index] += path @ weights
        else:
            matrix[:, :, index] = modes @ weights
    return matrix


def thermal_band_matrix(sensor: str | Sensor) -> np.ndarray:
    """Per-class brightness temperature (K) of every thermal band, per mode: [C, 4, n_bands].

    Mixed pixels average temperatures, not radiances (within ~0.5 K for these contrasts).
    """
    sensor = get_sensor(sensor)
    matrix = np.zeros((NUM_CLASSES, N_MODES, len(sensor)))
    for index, band in enumerate(sensor.bands):
        if band_kind(band) == "thermal":
            matrix[:, :, index] = THERMAL_TABLE_K
            offset = THERMAL_BAND_OFFSET_K_PER_UM * (band.center_nm - 10_000.0) / 1000.0
            matrix[:, 0, index] += offset
    return matrix


def sar_band_table(band: Band) -> np.ndarray:
    """Per-class sigma0 model (dB) of a SAR band: [C, 3] = base, per unit u, per unit v."""
    return SAR_TABLE_DB[:, 0 if band.center_nm > 0 else 1, :]


# ----------------------------------------------------------------------------- area averaging


def class_mode_features(labels: np.ndarray, fields: np.ndarray, factor: int) -> np.ndarray:
    """Block means of ``1[class] * (1, b, u, v)`` over ``factor`` x ``factor`` cells.

    Optical and thermal band values are linear in these, so area-averaged band values of every
    band are one matrix product away (see :func:`linear_band_values`).

    Args:
        labels: uint8 [H, W] class ids on the fine grid.
        fields: float32 [3, H, W] variability fields b, u, v.
        factor: Fine pixels per output pixel and side (divides H and W).

    Returns:
        float64 [h*w, 4*C], mode-major (all classes of mode 0, then mode 1, ...).
    """
    height, width = labels.shape
    h, w = height // factor, width // factor
    cells = (np.arange(height) // factor)[:, None] * w + (np.arange(width) // factor)[None, :]
    index = (cells * NUM_CLASSES + labels).ravel()
    bins = h * w * NUM_CLASSES
    features = np.empty((N_MODES, bins))
    features[0] = np.bincount(index, minlength=bins)
    for k in range(3):
        features[k + 1] = np.bincount(index, weights=fields[k].ravel(), minlength=bins)
    features = features.reshape(N_MODES, h * w, NUM_CLASSES).transpose(1, 0, 2)
    return np.ascontiguousarray(features.reshape(h * w, -1)) / factor**2


def linear_band_values(
    labels: np.ndarray,
    fields: np.ndarray,
    matrix: np.ndarray,
    factor: int,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """Area-averaged band values of a linear band model on the ``factor`` grid.

    Args:
        labels: uint8 [H, W] class ids on the fine grid.
        fields: float32 [3, H, W] variability fields.
        matrix: [C, 4, n] per-class mode values of n bands (see :func:`optical_band_matrix`).
        factor: Fine pixels per output pixel and side.
        features: Precomputed :func:`class_mode_features` for this factor (optional).

    Returns:
        float32 [n, H // factor, W // factor].
    """
    size = labels.shape[0] // factor
    if factor == 1:  # on the fine grid a per-pixel lookup is cheaper than the feature matrix
        table = matrix.astype(np.float32)
        values = np.empty((matrix.shape[2], *labels.shape), dtype=np.float32)
        for band in range(matrix.shape[2]):
            values[band] = table[:, 0, band][labels]
            for k in range(3):
                values[band] += table[:, k + 1, band][labels] * fields[k]
        return values
    if features is None:
        features = class_mode_features(labels, fields, factor)
    mode_major = matrix.transpose(1, 0, 2).reshape(-1, matrix.shape[2])
    return (features @ mode_major).T.reshape(-1, size, labels.shape[1] // factor).astype(np.float32)


def sar_sigma0_db(
    labels: np.ndarray,
    fields: np.ndarray,
    band: Band,
    factor: int,
    rng: np.random.Generator,
    looks: float | None,
) -> np.ndarray:
    """Backscatter of a SAR band: area-averaged in linear power, gamma speckle, in dB.

    Args:
        labels: uint8 [H, W] class ids on the fine grid.
        fields: float32 [3, H, W] variability fields (``u`` and ``v`` modulate sigma0).
        band: The SAR band (sign of its wavelength picks VV/VH, see :mod:`rsfm.sensors`).
        factor: Fine pixels per output pixel and side.
        rng: Source of the speckle.
        looks: Equivalent number of looks (None: no speckle).

    Returns:
        float32 [H // factor, W // factor] sigma0 in dB.
    """
    table = sar_band_table(band).astype(np.float32)
    sigma0_db = table[labels, 0] + table[labels, 1] * fields[1] + table[labels, 2] * fields[2]
    h, w = labels.shape[0] // factor, labels.shape[1] // factor
    power = (10.0 ** (sigma0_db / 10.0)).reshape(h, factor, w, factor).mean(axis=(1, 3))
    if looks is not None:
        power = power * rng.gamma(looks, 1.0 / looks, power.shape).astype(np.float32)
    return (10.0 * np.log10(power)).astype(np.float32)

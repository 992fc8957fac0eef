"""What the synthetic world generates: its config (hashed into the cache folder name)."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

from rsfm.sensors import get_sensor

GENERATOR_VERSION = "1"
DEFAULT_SENSORS = ("sentinel2_l1c", "sentinel1_grd", "landsat8_sr", "naip")
MAX_FINE_PIXELS = 8192


def is_multiple(value: float, step: float) -> bool:
    """True if ``value`` is a whole multiple of ``step`` (to 1e-6 of a step)."""
    ratio = value / step
    return step > 0 and abs(ratio - round(ratio)) < 1e-6


@dataclass
class SyntheticWorldConfig:
    """What to generate. Hashing it names the cache directory.

    Attributes:
        seed: Master seed; scene ``i`` uses ``SeedSequence([seed, i])``.
        n_scenes: Number of scenes.
        scene_size_m: Side of each square scene (a multiple of every GSD).
        sensors: Registry names of the sensors to render.
        gsd_m: Per-sensor GSD overrides (default: NAIP at 2 m so files stay small).
        labels_gsd_m: Grid of ``labels.tif`` (majority of the fine labels per cell).
        nodata_wedge: Blank a swath-edge wedge in the last scene's Sentinel-2 rasters.
        sar_looks: Equivalent number of looks of the SAR speckle.
        landscape_scale: Multiplies every length of the landscape (land-cover patches,
            parcels, river and road widths, the variability fields' correlation lengths).
            1 is the default world; larger values give smoother scenes with fewer edges per
            window, whose masked patches are predictable from the visible ones (the
            quickstart uses 4). Left out of the hash at 1, so default worlds keep their
            cache folder.
    """

    seed: int = 0
    n_scenes: int = 8
    scene_size_m: float = 1920.0
    sensors: tuple[str, ...] = DEFAULT_SENSORS
    gsd_m: dict[str, float] = field(default_factory=lambda: {"naip": 2.0})
    labels_gsd_m: float = 10.0
    nodata_wedge: bool = True
    sar_looks: float = 4.0
    landscape_scale: float = 1.0

    def __post_init__(self) -> None:
        self.sensors = tuple(get_sensor(name).name for name in self.sensors)
        self.gsd_m = {get_sensor(k).name: float(v) for k, v in self.gsd_m.items()}
        self.landscape_scale = float(self.landscape_scale)
        if not (math.isfinite(self.landscape_scale) and self.landscape_scale > 0):
            raise ValueError(f"landscape_scale must be > 0, got {self.landscape_scale}")
        if self.n_scenes < 1:
            raise ValueError(f"n_scenes must be >= 1, got {self.n_scenes}")
        for gsd in (*self.all_gsds(), self.labels_gsd_m):
            if not is_multiple(self.scene_size_m, gsd):
                raise ValueError(f"scene_size_m={self.scene_size_m} is not a multiple of GSD {gsd}")
        if self.scene_size_m / self.fine_gsd_m() > MAX_FINE_PIXELS:
            raise ValueError(
                f"the fine grid ({self.fine_gsd_m()} m, the GCD of all GSDs) would be "
                f"{self.scene_size_m / self.fine_gsd_m():.0f} px wide; pick GSDs with a larger GCD"
            )

    def sensor_gsd(self, sensor: str) -> float:
        """The product grid GSD of a sensor (override or the sensor's finest band)."""
        name = get_sensor(sensor).name
        return self.gsd_m.get(name, get_sensor(name).gsd)

    def all_gsds(self) -> list[float]:
        """Product GSDs of all configured sensors."""
        return [self.sensor_gsd(s) for s in self.sensors]

    def fine_gsd_m(self) -> float:
        """The fine grid the scenes are drawn on: the GCD of all GSDs (to the centimetre)."""
        centimetres = [round(g * 100) for g in (*self.all_gsds(), self.labels_gsd_m)]
        return math.gcd(*centimetres) / 100.0

    def to_dict(self) -> dict:
        """JSON-ready copy."""
        data = asdict(self)
        data["sensors"] = list(self.sensors)
        data["gsd_m"] = dict(sorted(self.gsd_m.items()))
        if data["landscape_scale"] == 1.0:  # the default world keeps its hash (cache folder)
            del data["landscape_scale"]
        return data

    def config_hash(self) -> str:
        """Short hash of the config and generator version (the cache directory name)."""
        payload = json.dumps(
            {"config": self.to_dict(), "version": GENERATOR_VERSION}, sort_keys=True
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

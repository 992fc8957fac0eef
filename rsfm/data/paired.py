"""Co-registered pairs of two sensors read onto one grid (e.g. Sentinel-2 + Sentinel-1)."""

from __future__ import annotations

import copy
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
from torchgeo.datasets import GeoDataset
from torchgeo.datasets.utils import GeoSlice

from rsfm.data.raster import SensorRasterDataset

PAIR_KEYS = {"image": "pair_image", "wavelengths": "pair_wavelengths", "sensor": "pair_sensor"}


class CoRegisteredPairDataset(GeoDataset):
    """Two sensors over their spatial intersection, both read onto the first's grid.

    A sample is the first dataset's sample dict plus ``pair_image``, ``pair_wavelengths``,
    ``pair_sensor`` and ``pair_valid`` (the second sensor's own valid mask; ``valid`` stays the
    first's). The second is reprojected/resampled onto the first's CRS and resolution.
    """

    def __init__(self, first: SensorRasterDataset, second: SensorRasterDataset) -> None:
        """Intersect the two datasets.

        Args:
            first: The reference sensor: its CRS and resolution define the grid.
            second: The paired sensor (not modified: a re-gridded copy is used when needed).

        Raises:
            ValueError: If the two datasets do not overlap in space and time.
        """
        self.first = first
        self.second = second
        if pyproj.CRS(second.crs) != pyproj.CRS(first.crs) or second.res != first.res:
            self.second = copy.copy(second)  # torchgeo's IntersectionDataset mutates its inputs
            self.second.crs = first.crs
            self.second.res = first.res
        self.paths = first.paths
        self._res = first.res
        left = first.index.reset_index()
        right = self.second.index.reset_index()
        index = gpd.overlay(left, right, how="intersection", keep_geom_type=True)
        index = index[~index.is_empty]
        first_t = pd.IntervalIndex(index.pop("datetime_1"))
        second_t = pd.IntervalIndex(index.pop("datetime_2"))
        tmin = np.maximum(first_t.left, second_t.left)
        tmax = np.minimum(first_t.right, second_t.right)
        overlap = np.asarray(tmax >= tmin)
        index = index[overlap]
        index.index = pd.IntervalIndex.from_arrays(
            tmin[overlap], tmax[overlap], closed="both", name="datetime"
        )
        if index.empty:
            raise ValueError(
                f"{first.files[0]} and {second.files[0]}: the datasets do not overlap "
                f"(first bounds {first.index.total_bounds}, second {second.index.total_bounds})"
            )
        self.index = index

    def __getitem__(self, query: GeoSlice) -> dict[str, Any] | None:
        """Both sensors' windows of ``query`` on the first's grid (None if either is skipped)."""
        x, y, t = self._disambiguate_slice(query)
        first = self.first[x, y, t]
        if first is None:
            return None
        second = self.second[x, y, t]
        if second is None:
            return None
        for key, pair_key in PAIR_KEYS.items():
            first[pair_key] = second[key]
        first["pair_valid"] = second["valid"]
        return first

"""The reading side of chip shards: LitData's StreamingDataset returning rsfm sample dicts.

:class:`ShardDataset` streams a folder written by ``rsfm data chip`` from local disk or object
storage (``s3://``, ``gs://``, ...; LitData downloads chunks ahead into its cache) and decodes
each stored chip into the sample contract: ``image`` float32 [C,H,W], ``valid`` bool [H,W],
``wavelengths`` float32 [C], ``mask`` int64 [H,W] (with labels), ``crs`` (rasterio CRS),
``bounds`` / ``window`` tuples and ``transform`` (Affine). The values are the stored ones
(bit for bit: integer images are stored in their own dtype, which float32 holds exactly).
DDP sharding, shuffling and mid-epoch resume are LitData's (``StreamingDataLoader``).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from affine import Affine
from litdata import StreamingDataset
from rasterio.crs import CRS

from rsfm.band_stats import BandStats

_FLOAT = ("image", "pair_image", "wavelengths", "pair_wavelengths")
_BOOL = ("valid", "pair_valid")


@functools.lru_cache(maxsize=64)
def _crs(text: str) -> CRS:
    return CRS.from_user_input(text)


def decode_sample(item: dict[str, Any]) -> dict[str, Any]:
    """A stored chip (numpy arrays, strings, floats) as an rsfm sample dict of tensors."""
    sample: dict[str, Any] = {}
    for key, value in item.items():
        if key in _FLOAT:
            sample[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
        elif key in _BOOL:
            sample[key] = torch.from_numpy(np.asarray(value, dtype=bool))
        elif key == "mask":
            sample[key] = torch.from_numpy(np.asarray(value, dtype=np.int64))
        elif key == "crs":
            sample[key] = _crs(bytes(value).decode("utf-8"))
        elif key == "bounds":
            sample[key] = tuple(float(v) for v in value)
        elif key == "window":
            sample[key] = tuple(int(v) for v in value)
        elif key == "transform":
            sample[key] = Affine(*(float(v) for v in value))
        elif isinstance(value, bytes | memoryview):  # strings are stored as UTF-8 bytes
            sample[key] = bytes(value).decode("utf-8")
        else:
            sample[key] = value
    return sample


def _local(input_dir: str | os.PathLike[str]) -> Path | None:
    text = os.fspath(input_dir)
    return None if "://" in text else Path(text.removeprefix("local:"))


def load_manifest(input_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """``manifest.json`` of a local shard folder."""
    return json.loads((Path(input_dir) / "manifest.json").read_text())


def load_band_stats(input_dir: str | os.PathLike[str]) -> dict[str, BandStats]:
    """``band_stats.json`` of a local shard folder: ``{sensor: BandStats}``."""
    data = json.loads((Path(input_dir) / "band_stats.json").read_text())
    return {name: BandStats.from_dict(value) for name, value in data.items()}


class ShardDataset(StreamingDataset):
    """Chip shards as rsfm sample dicts (a :class:`litdata.StreamingDataset`).

    Args:
        input_dir: The folder ``rsfm data chip`` wrote, local or a URL LitData streams.
        transform: Applied after decoding (a callable or a list of them).
        **kwargs: Passed to :class:`litdata.StreamingDataset` (``shuffle``, ``seed``,
            ``drop_last``, ``cache_dir``, ``max_cache_size``, ``storage_options``, ...).
    """

    def __init__(
        self, input_dir: str | os.PathLike[str], transform: Any = None, **kwargs: Any
    ) -> None:
        extra = (
            [] if transform is None else transform if isinstance(transform, list) else [transform]
        )
        self.shard_dir = os.fspath(input_dir)
        super().__init__(self.shard_dir, transform=[decode_sample, *extra], **kwargs)

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The folder's manifest (None for a remote folder)."""
        local = _local(self.shard_dir)
        return None if local is None else load_manifest(local)

    @property
    def band_stats(self) -> dict[str, BandStats]:
        """``{sensor: BandStats}`` saved with the shards (empty for a remote folder)."""
        local = _local(self.shard_dir)
        return {} if local is None else load_band_stats(local)

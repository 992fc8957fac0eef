"""Label sources of fine-tuning windows: label rules, image-level labels, target rasters.

:class:`LabelledWindows` turns the windows of an image dataset into labelled samples for one task
(``segmentation`` masks, ``classification`` / ``multilabel`` window labels, ``regression``
targets); :class:`LabelSpec` holds the rules, :class:`ImageLabels` per-file labels (GeoTIFF tag or
JSON table, see :func:`file_labels`), :class:`TargetRasters` continuous targets warped onto any
window grid, and :func:`vegetation_fraction_rasters` the synthetic world's regression target.
:class:`~rsfm.data.datamodules.labelled.LabelledGeoDataModule` assembles them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from torch.utils.data import Dataset

from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.geotiff import write_geotiff
from rsfm.data.synthetic.scenes import generate_scene
from rsfm.data.synthetic.spectra import (
    CLASS_NAMES,
    NUM_CLASSES,
    VEGETATION_CLASSES,
    class_mode_features,
)
from rsfm.data.synthetic.world import load_manifest

TASKS = ("segmentation", "classification", "multilabel", "regression")
IGNORE_INDEX = -1
VEGETATION_FRACTION_FILE = "vegetation_fraction.tif"


# ----------------------------------------------------------------------------- derived targets
def vegetation_fraction_rasters(root: str | Path, gsd_m: float | None = None) -> list[Path]:
    """Fractional vegetation cover rasters of a synthetic world, one per scene (made once).

    Each pixel holds the fraction (0..1) of its area that the scene's fine land-cover map marks
    as forest, grassland or cropland: the sub-pixel vegetation cover a sensor pixel integrates.
    Scenes are regenerated from the world's manifest (generation is deterministic), so the
    values are exact area fractions rather than smoothed labels.

    Args:
        root: A synthetic world directory (``ensure_synthetic_world``).
        gsd_m: Pixel size (default: the world's label grid, 10 m).

    Returns:
        ``<root>/scene_*/vegetation_fraction.tif`` paths in scene order (float32, nodata NaN).
    """
    root = Path(root)
    manifest = load_manifest(root)
    config = SyntheticWorldConfig(**manifest["config"])
    if config.config_hash() != manifest["config_hash"]:
        raise ValueError(f"{root}: manifest config does not reproduce the world's hash")
    gsd = float(gsd_m or config.labels_gsd_m)
    paths = []
    for index, entry in enumerate(manifest["scenes"]):
        path = root / entry["name"] / VEGETATION_FRACTION_FILE
        paths.append(path)
        if path.is_file():
            continue
        scene = generate_scene(config, index)
        factor = scene.factor(gsd)
        fractions = class_mode_features(scene.labels, scene.fields, factor)[:, :NUM_CLASSES]
        size = scene.labels.shape[0] // factor
        cover = fractions[:, list(VEGETATION_CLASSES)].sum(axis=1).reshape(1, size, size)
        tags = {
            "RSFM_SCENE": scene.name,
            "QUANTITY": "fractional vegetation cover (forest + grassland + cropland area share)",
            "UNITS": "fraction 0..1",
        }
        handle, temporary = tempfile.mkstemp(suffix=".tif", dir=path.parent)
        os.close(handle)
        try:
            band_tags = [{"description": "vegetation_fraction"}]
            write_geotiff(
                Path(temporary), cover.astype(np.float32), scene, gsd, float("nan"), band_tags, tags
            )
            os.replace(temporary, path)  # atomic: readers never see a half-written file
        finally:
            Path(temporary).unlink(missing_ok=True)
    return paths


class TargetRasters:
    """Continuous target rasters read on any sample grid (reprojected, bilinear, NaN outside).

    Each read warps the files that overlap the window onto the sample's exact grid with a
    rasterio ``WarpedVRT``; the first file covering a pixel wins.

    Args:
        paths: Target GeoTIFFs (band ``band`` is read).
        band: 1-based band number.
    """

    def __init__(self, paths: Sequence[str | Path], band: int = 1) -> None:
        self.paths = [str(p) for p in paths]
        self.band = band
        self._footprints: dict[str, list[tuple[float, float, float, float]]] = {}

    def _footprints_in(self, crs: CRS) -> list[tuple[float, float, float, float]]:
        key = crs.to_string()
        if key not in self._footprints:
            boxes = []
            for path in self.paths:
                with rasterio.open(path) as src:
                    boxes.append(tuple(transform_bounds(src.crs, crs, *src.bounds)))
            self._footprints[key] = boxes
        return self._footprints[key]

    def read(self, crs: CRS, transform: Affine, height: int, width: int) -> np.ndarray:
        """The target on a grid: float32 [height, width], NaN where no file has data."""
        out = np.full((height, width), np.nan, dtype=np.float32)
        left, top = transform.c, transform.f
        right, bottom = left + width * transform.a, top + height * transform.e
        for path, (x0, y0, x1, y1) in zip(self.paths, self._footprints_in(crs), strict=True):
            if x0 >= right or x1 <= left or y0 >= top or y1 <= bottom:
                continue
            with rasterio.open(path) as src:
                vrt_args: dict[str, Any] = {"add_alpha": True} if src.nodata is None else {}
                with WarpedVRT(
                    src,
                    crs=crs,
                    transform=transform,
                    width=width,
                    height=height,
                    resampling=Resampling.bilinear,
                    **vrt_args,
                ) as vrt:
                    data = vrt.read(self.band, out_dtype="float32")
                    covered = vrt.read_masks(self.band) > 0
            take = covered & np.isnan(out) & np.isfinite(data)
            out[take] = data[take]
            if not np.isnan(out).any():
                break
        return out


# ----------------------------------------------------------------------------- labelling
def resolve_class_names(
    task: str,
    class_names: Sequence[str] | None,
    num_classes: int | None,
    synthetic_default: bool,
) -> list[str]:
    """The class names of a labelled datamodule (``[]`` for regression).

    Args:
        task: ``classification``, ``multilabel``, ``segmentation`` or ``regression``.
        class_names: Names given by the user, if any.
        num_classes: Class count given by the user, if any (names default to ``class_i``).
        synthetic_default: No user data: the synthetic world's land-cover classes apply.

    Raises:
        ValueError: If neither names nor a count is given for user data, or they disagree.
    """
    if task == "regression":
        return []
    if class_names is None and synthetic_default:
        class_names = list(CLASS_NAMES)
    elif class_names is None and num_classes is None:
        raise ValueError("give class_names or num_classes for your labels")
    count = int(len(class_names) if num_classes is None else num_classes)
    names = list(class_names or [f"class_{i}" for i in range(count)])
    if len(names) != count:
        raise ValueError(f"{len(names)} class_names for {count} classes")
    return names


@dataclass
class LabelSpec:
    """How raw label values become training labels.

    Attributes:
        task: One of ``TASKS``.
        num_classes: Number of classes K (classification tasks).
        ignore_values: Raw label values treated as unlabelled.
        label_offset: Subtracted from raw labels (e.g. 1 when classes are stored as 1..K).
        multilabel_threshold: Share of labelled pixels a class must exceed to be present.
        min_labelled_fraction: Windows with fewer labelled pixels are skipped (classification).
    """

    task: str
    num_classes: int
    ignore_values: list[int] = field(default_factory=list)
    label_offset: int = 0
    multilabel_threshold: float = 0.05
    min_labelled_fraction: float = 0.25

    def class_ids(self, raw: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Raw label window -> class ids 0..K-1, ``IGNORE_INDEX`` elsewhere (int64 [H, W])."""
        ignore = (raw == IGNORE_INDEX) | ~valid
        if self.ignore_values:
            ignore |= torch.isin(raw, torch.as_tensor(self.ignore_values, dtype=raw.dtype))
        ids = raw - self.label_offset
        ignore |= (ids < 0) | (ids >= self.num_classes)
        return ids.masked_fill(ignore, IGNORE_INDEX)

    def window_label(self, ids: torch.Tensor) -> torch.Tensor | None:
        """Majority class (int64) or multi-hot presence (float32 [K]); None if too unlabelled."""
        labelled = ids[ids >= 0]
        if labelled.numel() < self.min_labelled_fraction * ids.numel() or labelled.numel() == 0:
            return None
        counts = torch.bincount(labelled, minlength=self.num_classes).to(torch.float32)
        if self.task == "classification":
            return counts.argmax()  # ties go to the lower class id
        return (counts / labelled.numel() > self.multilabel_threshold).to(torch.float32)


class ImageLabels:
    """Image-level labels (one set per file), looked up from a window's location.

    Args:
        files: Image files.
        crs: The dataset CRS the windows are in.
        labels: Per file, the multi-hot (float32 [K]) or class id (int64) label.
    """

    def __init__(self, files: Sequence[str | Path], crs: CRS, labels: list[torch.Tensor]) -> None:
        self.labels = labels
        self.boxes = []
        for path in files:
            with rasterio.open(path) as src:
                self.boxes.append(transform_bounds(src.crs, crs, *src.bounds))

    def lookup(self, bounds: Sequence[float]) -> torch.Tensor:
        """Label of the file containing the window's centre."""
        cx, cy = 0.5 * (bounds[0] + bounds[2]), 0.5 * (bounds[1] + bounds[3])
        for (x0, y0, x1, y1), label in zip(self.boxes, self.labels, strict=True):
            if x0 <= cx <= x1 and y0 <= cy <= y1:
                return label.clone()
        raise IndexError(f"no labelled image contains the window {tuple(bounds)}")


class LabelledWindows(Dataset):
    """Windows of an image dataset, turned into labelled samples for one task.

    Args:
        windows: ``RandomWindows`` / ``GridWindows`` over a ``SensorRasterDataset``.
        spec: Label rules.
        targets: Target rasters (regression).
        image_labels: Image-level labels (classification from a tag or a table).
    """

    def __init__(
        self,
        windows: Dataset,
        spec: LabelSpec,
        targets: TargetRasters | None = None,
        image_labels: ImageLabels | None = None,
    ) -> None:
        self.windows = windows
        self.spec = spec
        self.targets = targets
        self.image_labels = image_labels

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        sample = self.windows[index]
        if sample is None:  # an all-nodata window (counted by the collate function)
            return None
        valid = sample["valid"]
        if self.spec.task == "regression":
            _, height, width = sample["image"].shape
            target = self.targets.read(sample["crs"], sample["transform"], height, width)
            target = torch.from_numpy(target).masked_fill(~valid, float("nan"))
            sample["target"] = target
            return sample
        if self.image_labels is not None:
            sample["label"] = self.image_labels.lookup(sample["bounds"])
            return sample
        ids = self.spec.class_ids(sample["mask"], valid)
        if self.spec.task == "segmentation":
            sample["mask"] = ids
            return sample
        label = self.spec.window_label(ids)
        if label is None:
            return None
        sample["mask"] = ids
        sample["label"] = label
        return sample


def file_labels(
    files: Sequence[Path],
    class_names: Sequence[str],
    task: str,
    label_tag: str | None,
    table: dict[str, Any] | None,
) -> list[torch.Tensor]:
    """Per-file labels from a GeoTIFF tag (JSON list of names) or a ``{stem: names}`` table."""
    lookup = {name: i for i, name in enumerate(class_names)}
    labels = []
    for path in files:
        if label_tag is not None:
            with rasterio.open(path) as src:
                text = src.tags().get(label_tag)
            if text is None:
                raise ValueError(f"{path}: has no {label_tag!r} tag holding its labels")
            names = json.loads(text)
        else:
            key = next((k for k in table if path.stem == k or path.stem.startswith(f"{k}_")), None)
            if key is None:
                raise ValueError(f"{path}: no entry for {path.stem!r} in the label table")
            entry = table[key]
            names = entry["labels"] if isinstance(entry, dict) else entry
        names = [names] if isinstance(names, str | int) else list(names)
        unknown = [n for n in names if n not in lookup and not isinstance(n, int)]
        if unknown:
            raise ValueError(f"{path}: labels {unknown} are not in class_names {class_names}")
        ids = [n if isinstance(n, int) else lookup[n] for n in names]
        if task == "classification":
            labels.append(torch.tensor(ids[0], dtype=torch.int64))
        else:
            hot = torch.zeros(len(class_names), dtype=torch.float32)
            hot[ids] = 1.0
            labels.append(hot)
    return labels

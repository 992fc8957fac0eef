"""Co-registered, labelled multi-sensor windows for multi-modal co-learning.

``MultiModalDataModule`` pairs two sensors of the same places (e.g. Sentinel-2 + Sentinel-1) with
:class:`~rsfm.data.paired.CoRegisteredPairDataset` and labels every window like
:class:`~rsfm.data.datamodules.labelled.LabelledGeoDataModule`
does: the majority class of a label raster
(``classification``), the classes above an area share (``multilabel``), image-level labels from
a GeoTIFF tag or a JSON table (BigEarthNet), or the window mean of a target raster
(``regression``, sample ``target`` [H, W]). One modality works too (single-sensor baselines).

The first modality's bands are the sample's ``image`` / ``wavelengths`` / ``valid``, the
second's ``pair_image`` / ``pair_wavelengths`` / ``pair_valid`` (read onto the first's grid);
:attr:`MultiModalDataModule.modality_keys` tells a task which keys hold which modality.

Few labels, many pairs: ``labelled_windows`` fixes a small labelled training set and
``unlabelled_windows`` adds pairs without labels to every training batch
(:class:`LabelledUnlabelledBatchSampler`); their labels are blanked (:class:`Unlabelled`), so
a co-learning task trains its contrastive and discrimination terms on them and its task terms
on the labelled samples only.

Without files it uses the embedded synthetic world: Sentinel-2 (``s2``) and speckled
Sentinel-1 (``s1``) of every scene, its 10 m land-cover labels, the last scene(s) held out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from rsfm.band_stats import BandStats
from rsfm.data.datamodules.base import BaseDataModule, DataFacts
from rsfm.data.datamodules.labelled import _same_crs
from rsfm.data.datamodules.pretrain import expand_paths, files_by_crs, split_files
from rsfm.data.labels import (
    IGNORE_INDEX,
    TASKS,
    ImageLabels,
    LabelledWindows,
    LabelSpec,
    TargetRasters,
    file_labels,
    resolve_class_names,
    vegetation_fraction_rasters,
)
from rsfm.data.paired import CoRegisteredPairDataset
from rsfm.data.raster import SensorRasterDataset
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.data.synthetic.world import ensure_synthetic_world, scene_files
from rsfm.data.windows import GridWindows, RandomWindows

log = logging.getLogger(__name__)

MODALITY_TASKS = tuple(t for t in TASKS if t != "segmentation")
BATCH_KEYS = (
    {"image": "image", "wavelengths": "wavelengths", "valid": "valid"},
    {"image": "pair_image", "wavelengths": "pair_wavelengths", "valid": "pair_valid"},
)
DEFAULT_SYNTHETIC_MODALITIES = {"s2": "sentinel2_l1c", "s1": "sentinel1_grd"}
UNLABELLED_SEED_OFFSET = 500_000  # unlabelled windows: seeds far from the labelled ones


class Unlabelled(Dataset):
    """Labelled windows with their labels blanked: pairs for the label-free loss terms.

    Classification labels (and ``mask``) become ``IGNORE_INDEX``, multi-label vectors and
    regression targets NaN; the keys stay, so these samples batch with labelled ones.
    """

    def __init__(self, windows: Dataset) -> None:
        self.windows = windows

    def __len__(self) -> int:
        return len(self.windows)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        sample = self.windows[index]
        if sample is None:
            return None
        if "mask" in sample:
            sample["mask"] = torch.full_like(sample["mask"], IGNORE_INDEX)
        if "target" in sample:
            sample["target"] = torch.full_like(sample["target"], float("nan"))
        label = sample.get("label")
        if label is not None:
            blank = IGNORE_INDEX if not label.is_floating_point() else float("nan")
            sample["label"] = torch.full_like(label, blank)
        return sample


class LabelledUnlabelledBatchSampler(Sampler[list[int]]):
    """Batches of ``labelled`` samples plus ``unlabelled`` samples from a second pool.

    Over ``ConcatDataset([labelled windows, unlabelled windows])``: one epoch visits every
    labelled index once (shuffled, incomplete last batch dropped); the unlabelled indices
    cycle through fresh permutations. Hand-written: torch has no fixed-proportion sampler.

    Args:
        labelled_count: Size of the labelled pool (indices ``0..labelled_count-1``).
        unlabelled_count: Size of the unlabelled pool (the indices after the labelled ones).
        labelled_per_batch: Labelled samples per batch.
        unlabelled_per_batch: Unlabelled samples per batch (0: labelled batches only).
        seed: Seed of the shuffling; epoch ``e`` uses ``seed + e``.
    """

    def __init__(
        self,
        labelled_count: int,
        unlabelled_count: int,
        labelled_per_batch: int,
        unlabelled_per_batch: int,
        seed: int = 0,
    ) -> None:
        if labelled_count < labelled_per_batch or labelled_per_batch < 1:
            raise ValueError(
                f"{labelled_count} labelled windows cannot fill batches of {labelled_per_batch}"
            )
        if unlabelled_per_batch and not unlabelled_count:
            raise ValueError("unlabelled samples per batch need unlabelled windows")
        self.labelled_count = labelled_count
        self.unlabelled_count = unlabelled_count
        self.labelled_per_batch = labelled_per_batch
        self.unlabelled_per_batch = unlabelled_per_batch
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return self.labelled_count // self.labelled_per_batch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        labelled = torch.randperm(self.labelled_count, generator=generator).tolist()
        pool: list[int] = []
        for start in range(0, len(self) * self.labelled_per_batch, self.labelled_per_batch):
            batch = labelled[start : start + self.labelled_per_batch]
            for _ in range(self.unlabelled_per_batch):
                if not pool:
                    pool = torch.randperm(self.unlabelled_count, generator=generator).tolist()
                batch.append(self.labelled_count + pool.pop())
            yield batch


@dataclass
class ModalitySource:
    """GeoTIFFs of one modality.

    Attributes:
        name: Modality name used by the model (``s2``, ``s1`` ...).
        paths: Files, directories or globs.
        sensor: Registered sensor (None: wavelengths from the files' tags).
        bands: Band subset, in this order.
        val_paths: Validation files; for the first modality, when empty, every fifth file (or
            the one file) is held out; the second is paired by location with either split.
    """

    name: str
    paths: list[str] = field(default_factory=list)
    sensor: str | None = None
    bands: list[str] | None = None
    val_paths: list[str] = field(default_factory=list)


class MultiModalDataModule(BaseDataModule):
    """Labelled windows of one or two co-registered modalities (see the module docstring).

    Args:
        task: ``classification``, ``multilabel`` or ``regression`` (window/image level).
        modalities: One or two sources (None: the synthetic world's ``synthetic_modalities``).
        labels: Label rasters of class ids (or target rasters for regression), matched by
            location with the first modality.
        label_tag: Image-level labels from this tag of the first modality's files.
        label_table: Image-level labels from a JSON file ``{file stem prefix: [names]}`` (or
            ``{prefix: {"labels": [...]}}``, BigEarthNet's ``labels.json``).
        class_names: Class names (default: the synthetic world's 7 classes).
        num_classes: Number of classes K (default: ``len(class_names)``).
        ignore_values: Raw label values meaning "unlabelled".
        label_offset: Subtracted from raw labels (1 for labels stored as 1..K).
        multilabel_threshold: Area share above which a class is present in a window.
        min_labelled_fraction: Skip windows with fewer labelled pixels.
        synthetic: Synthetic-world settings (when no modalities are given).
        synthetic_modalities: ``{name: sensor}`` of the synthetic world (at most two).
        synthetic_val_scenes: Last scenes of the synthetic world held out for validation.
        patch_size: Window side in pixels (of the first modality's grid).
        batch_size: Samples per batch.
        num_workers: DataLoader worker processes.
        samples_per_epoch: Random training windows per epoch (without ``labelled_windows``).
        labelled_windows: A fixed labelled training set of this many windows (drawn once,
            visited once per epoch) instead of ``samples_per_epoch`` fresh random windows.
        unlabelled_windows: A fixed pool of this many training pairs whose labels are
            ignored (two modalities only): the label-free co-learning terms use them.
        unlabelled_batch_size: Unlabelled pairs added to every training batch of
            ``batch_size`` labelled ones (default: ``batch_size``).
        val_samples: Validation windows (a fixed grid, evenly thinned).
        val_stride: Step of the validation grid in pixels (default: ``patch_size``).
        normalize: Apply per-band statistics of every modality.
        stats_samples: Windows used to compute statistics.
        seed: Seed of the window sampling.
    """

    def __init__(
        self,
        task: str = "classification",
        modalities: list[ModalitySource] | None = None,
        labels: list[str] | None = None,
        label_tag: str | None = None,
        label_table: str | None = None,
        class_names: list[str] | None = None,
        num_classes: int | None = None,
        ignore_values: list[int] | None = None,
        label_offset: int = 0,
        multilabel_threshold: float = 0.05,
        min_labelled_fraction: float = 0.25,
        synthetic: SyntheticWorldConfig | None = None,
        synthetic_modalities: dict[str, str] | None = None,
        synthetic_val_scenes: int = 1,
        patch_size: int = 32,
        batch_size: int = 16,
        num_workers: int = 0,
        samples_per_epoch: int = 256,
        labelled_windows: int | None = None,
        unlabelled_windows: int = 0,
        unlabelled_batch_size: int | None = None,
        val_samples: int = 64,
        val_stride: int | None = None,
        normalize: bool = True,
        stats_samples: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size, num_workers)
        if task not in MODALITY_TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {MODALITY_TASKS}")
        if label_tag and label_table:
            raise ValueError("give label_tag or label_table, not both")
        if (label_tag or label_table) and task == "regression":
            raise ValueError(
                "image-level labels (label_tag/label_table) need a classification task"
            )
        if modalities and not (labels or label_tag or label_table):
            raise ValueError("modalities need labels (rasters), label_tag or label_table")
        self.modalities = [_as_source(m) for m in modalities or []]
        self.synthetic_modalities = dict(synthetic_modalities or DEFAULT_SYNTHETIC_MODALITIES)
        self.synthetic_val_scenes = synthetic_val_scenes
        count = len(self.modalities or self.synthetic_modalities)
        if not 1 <= count <= 2:
            raise ValueError(f"give one or two modalities, got {count}")
        self.task = task
        self.labels = list(labels or [])
        self.label_tag = label_tag
        self.label_table = label_table
        self.class_names = resolve_class_names(task, class_names, num_classes, not self.modalities)
        self.num_classes = len(self.class_names)
        self.spec = LabelSpec(
            task,
            self.num_classes,
            list(ignore_values or []),
            label_offset,
            multilabel_threshold,
            min_labelled_fraction,
        )
        self.synthetic = synthetic
        self.patch_size = patch_size
        self.samples_per_epoch = samples_per_epoch
        if unlabelled_windows and count < 2:
            raise ValueError("unlabelled_windows need two modalities (pairs without labels)")
        if labelled_windows is not None and labelled_windows < batch_size:
            raise ValueError(f"labelled_windows={labelled_windows} < batch_size={batch_size}")
        self.labelled_windows = labelled_windows
        self.unlabelled_windows = unlabelled_windows
        self.unlabelled_batch_size = (
            batch_size if unlabelled_batch_size is None else unlabelled_batch_size
        )
        self.val_samples = val_samples
        self.val_stride = val_stride
        self.normalize = normalize
        self.stats_samples = stats_samples
        self.seed = seed
        self.data_root: Path | None = None
        self._unlabelled: Dataset | None = None
        self._keys: dict[str, str] = {}  # modality -> sensor key of its statistics

    # -- sources -------------------------------------------------------------------------------
    @property
    def modality_names(self) -> list[str]:
        """Modality names in batch order (first: ``image``, second: ``pair_image``)."""
        return [m.name for m in self.modalities] or list(self.synthetic_modalities)

    @property
    def modality_keys(self) -> dict[str, dict[str, str]]:
        """``{modality: {"image": key, "wavelengths": key, "valid": key}}`` of the batches."""
        return {name: dict(BATCH_KEYS[i]) for i, name in enumerate(self.modality_names)}

    def prepare_data(self) -> None:
        """Generate the synthetic world (and derived targets) once, when no files are given."""
        if not self.modalities:
            root = ensure_synthetic_world(config=self.synthetic or SyntheticWorldConfig())
            if self.task == "regression":
                vegetation_fraction_rasters(root)

    def _sources(self) -> tuple[list[ModalitySource], list[Path]]:
        """The modality sources and the label/target rasters."""
        if self.modalities:
            labels = expand_paths(self.labels) if self.labels else []
            return self.modalities, labels
        root = ensure_synthetic_world(config=self.synthetic or SyntheticWorldConfig())
        self.data_root = root
        sources = []
        for name, sensor in self.synthetic_modalities.items():
            files = [str(p) for p in scene_files(root, sensor)]
            held = max(1, min(self.synthetic_val_scenes, len(files) - 1))
            train, val = (files[:-held], files[-held:]) if len(files) > 1 else (files, files)
            sources.append(ModalitySource(name, train, sensor, None, val))
        if self.task == "regression":
            return sources, vegetation_fraction_rasters(root)
        return sources, scene_files(root, "labels")

    def _stats(self, source: ModalitySource, train_files: list[Path]) -> BandStats | None:
        """Per-band statistics of a modality (computed once from training windows, cached)."""
        key = source.sensor or train_files[0].stem
        self._keys[source.name] = key
        if not self.normalize:
            return None
        return self._cached_band_stats(
            key,
            train_files,
            source.bands,
            lambda: self._dataset(source, files_by_crs(train_files)[0], None, record=False),
            folder=self.data_root,  # the synthetic world: shared with other datamodules
        )

    def _dataset(
        self,
        source: ModalitySource,
        files: list[Path],
        stats: BandStats | None,
        label_paths: list[str] | None = None,
        record: bool = True,
    ) -> SensorRasterDataset:
        dataset = SensorRasterDataset(
            [str(f) for f in files],
            sensor=source.sensor,
            bands=source.bands,
            label_paths=label_paths,
            normalization=stats,
            skip_empty=True,
            nonfinite="mask",
            label_ignore_index=IGNORE_INDEX,
        )
        return self._feed(self._keys.get(source.name, source.name), dataset) if record else dataset

    def _label_rasters(self) -> bool:  # class-id rasters read as the samples' `mask`
        return self.task != "regression" and not (self.label_tag or self.label_table)

    def _windows(
        self,
        first: tuple[ModalitySource, list[Path], BandStats | None],
        second: tuple[ModalitySource, list[Path], BandStats | None] | None,
        labels: list[Path],
        train: bool,
        count: int | None = None,
        seed_offset: int = 0,
    ) -> list[LabelledWindows]:
        """Labelled windows of every CRS group of the first modality (paired when two).

        Training: ``count`` random windows (default ``samples_per_epoch``), fixed ones (the
        same every epoch) when ``count`` is given; validation: a grid of ``val_samples``.
        """
        table = json.loads(Path(self.label_table).read_text()) if self.label_table else None
        groups = files_by_crs(first[1])
        second_groups = files_by_crs(second[1]) if second else []
        members: list[tuple[list[Path], SensorRasterDataset, Dataset]] = []
        for group in groups:
            label_paths = _same_crs(labels, group[0]) if self._label_rasters() else None
            dataset = self._dataset(first[0], group, first[2], label_paths)
            if second is None:
                members.append((group, dataset, dataset))
                continue
            for other in second_groups:
                try:
                    pair = CoRegisteredPairDataset(
                        dataset, self._dataset(second[0], other, second[2])
                    )
                except ValueError:  # these two groups do not overlap
                    continue
                members.append((group, dataset, pair))
        if not members:
            names = [first[0].name] + ([second[0].name] if second else [])
            raise ValueError(f"the {names} files do not overlap anywhere: nothing to pair")
        total = self.val_samples if not train else count or self.samples_per_epoch
        per = max(1, total // len(members))
        out = []
        for k, (group, dataset, source) in enumerate(members):
            windows: Dataset
            if train:
                seed = self.seed + 1000 * k + seed_offset
                windows = RandomWindows(source, self.patch_size, per, seed, fixed=bool(count))
            else:
                windows = GridWindows(source, self.patch_size, self.val_stride, limit=per)
            image_labels = None
            if self.label_tag is not None or table is not None:
                values = file_labels(group, self.class_names, self.task, self.label_tag, table)
                image_labels = ImageLabels(group, dataset._rio_crs, values)
            targets = TargetRasters(labels) if self.task == "regression" else None
            out.append(LabelledWindows(windows, self.spec, targets, image_labels))
        return out

    def setup(self, stage: str | None = None) -> None:
        """Build the training and validation windows (and statistics on first use)."""
        sources, labels = self._sources()
        self._fed = []
        first, second = sources[0], sources[1] if len(sources) > 1 else None
        first_train, first_val = split_files(expand_paths(first.paths), first.val_paths)
        splits = {True: first_train, False: first_val}
        first_stats = self._stats(first, first_train)
        second_stats, second_splits = None, {}
        if second is not None:
            files = expand_paths(second.paths)
            if second.val_paths:
                second_splits = dict(
                    zip((True, False), split_files(files, second.val_paths), strict=True)
                )
            else:  # pairing by location restricts every split to the first modality's places
                second_splits = {True: files, False: files}
            second_stats = self._stats(second, second_splits[True])
        datasets = {}
        for train in (True, False):
            pair = (second, second_splits[train], second_stats) if second else None
            count = self.labelled_windows if train else None
            windows = self._windows((first, splits[train], first_stats), pair, labels, train, count)
            datasets[train] = ConcatDataset(windows)
        self.train_dataset, self.val_dataset = datasets[True], datasets[False]
        if self.unlabelled_windows:
            pair = (second, second_splits[True], second_stats)
            # other fixed windows of the training places (a seed offset away from the labelled)
            windows = self._windows(
                (first, splits[True], first_stats),
                pair,
                labels,
                True,
                self.unlabelled_windows,
                seed_offset=UNLABELLED_SEED_OFFSET,
            )
            self._unlabelled = Unlabelled(ConcatDataset(windows))

    # -- loaders and facts ------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        """Labelled windows of the training places (plus unlabelled pairs in every batch)."""
        if self._unlabelled is None or not self.unlabelled_batch_size:
            return self._loader(self.train_dataset, shuffle=True)
        sampler = LabelledUnlabelledBatchSampler(
            len(self.train_dataset),
            len(self._unlabelled),
            self.batch_size,
            self.unlabelled_batch_size,
            seed=self.seed,
        )
        return DataLoader(
            ConcatDataset([self.train_dataset, self._unlabelled]),
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
        )

    def data_facts(self) -> DataFacts:
        """Every modality's sensor and bands, the classes, and the files read."""
        name = "rsfm-synthetic-world" if self.data_root is not None else "geotiff"
        facts = self._raster_facts(f"{name}:{self.task}", self.data_root)
        facts.class_names = list(self.class_names) if self.task != "regression" else None
        return facts


def _as_source(value: ModalitySource | dict[str, Any]) -> ModalitySource:
    return value if isinstance(value, ModalitySource) else ModalitySource(**value)

"""The typed model card: what a hub entry's ``card.md`` front matter says about the model.

The front matter keeps Hugging Face model-card metadata at the top level (``license``,
``library_name``, ``tags``, ``pipeline_tag``) and every rsfm fact under the ``rsfm`` key::

    rsfm:
      schema_version: 2
      name / version / family / task / output / class_names / ignore_index
      architecture: {name, class_path, component}
      parameters / input_size / patch_size
      sensors: {sensor: {modality, bands: [{name, wavelength_nm, fwhm_nm, gsd_m}]}}
      stages: [{stage, sensors: {sensor: {modality, bands}}, bad_bands, datasets}]
      normalization: {sensor: BandStats.to_dict()}
      gsd: {sensor: metres}
      metrics / training / extra / description / intended_use

``sensors`` lists the sensors of the LAST training stage (a head fine-tuned on Sentinel-2 lists
only Sentinel-2); ``stages`` tells what each stage saw; ``normalization`` holds the statistics of
every sensor the model saw in any stage. Schema 1 cards (no ``schema_version``, no stages, e.g.
the shipped ``smarties-tiny@1.0.0``) still load. :class:`ModelCard` is the one reader and writer;
nothing else digs into the front-matter dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rsfm.band_stats import BandStats
from rsfm.hub.checkpoint_keys import TaskFacts, TrainingStage
from rsfm.hub.entry import HubError
from rsfm.sensors import Band, Sensor, get_sensor

SCHEMA_VERSION = 2
DEFAULT_LICENSE = "apache-2.0"
PIPELINE_TAG = "image-feature-extraction"
# Fields a caller may set through ``card=`` (everything else is derived).
CARD_FIELDS = (
    "name",
    "version",
    "family",
    "task",
    "output",
    "class_names",
    "ignore_index",
    "component",
    "sensors",
    "stages",
    "normalization",
    "gsd",
    "input_size",
    "patch_size",
    "metrics",
    "training",
    "extra",
    "license",
    "tags",
    "description",
    "intended_use",
)
# Task kind -> (Hugging Face pipeline tag, default output kind of tiled inference).
TASKS: dict[str, tuple[str, str | None]] = {
    "segmentation": ("image-segmentation", "classes"),
    "classification": ("image-classification", "classes"),
    "multilabel": ("image-classification", "probabilities"),
    "regression": ("image-to-image", "values"),
    "masked-image-modeling": ("image-feature-extraction", "embeddings"),
    "feature-extraction": ("image-feature-extraction", "embeddings"),
    "image-text-contrastive": ("zero-shot-image-classification", "embeddings"),
    "text-to-image": ("text-to-image", "image"),
    "super-resolution": ("image-to-image", "image"),
    "segmentation-quality-assessment": ("other", "quality"),
    "co-learning": ("image-classification", "classes"),
}
# Task names older checkpoints wrote -> the names of :class:`TaskFacts`.
LEGACY_TASKS = {
    "hyperspectral_segmentation": "segmentation",
    "clip": "image-text-contrastive",
    "refsr": "super-resolution",
    "segmentation_quality_assessment": "segmentation-quality-assessment",
}
# Task of an architecture pushed without task facts (a bare model), by class name.
ARCHITECTURE_TASKS = {
    "SmartiesMAE": "masked-image-modeling",
    "SmartiesEncoder": "feature-extraction",
    "RSCLIP": "image-text-contrastive",
    "CoLearningModel": "co-learning",
    "CRefDiffModel": "super-resolution",
    "SQAModel": "segmentation-quality-assessment",
    "Text2Earth": "text-to-image",
    "HyperSegFormer": "segmentation",
    "HyperEfficientViT": "segmentation",
}
_BAND_NAME = re.compile(r"^(?:B|BAND[_ ]?)0*(\d+)([A-Z]?)$")
_DEFAULT_INTENDED_USE = (
    "Research on remote-sensing representation learning: feature extraction, fine-tuning for "
    "segmentation or classification, tiled inference over GeoTIFFs of the listed sensors. Feed "
    "only the listed bands (by wavelength), normalised with the listed statistics; other sensors "
    "need an explicit band mapping. Validate on your own region before any operational use."
)


def jsonable(value: Any) -> Any:
    """A copy made of dicts, lists, strings, numbers, bools and None (other objects -> str)."""
    if isinstance(value, BandStats | Sensor):
        value = value.to_dict()
    if hasattr(value, "to_front_matter"):
        value = value.to_front_matter()
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # 0-d tensors / numpy scalars (e.g. a checkpoint's best score)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def family_of(class_path: str) -> str:
    """Model family from a class path: ``rsfm.models.smarties.SmartiesMAE`` -> ``smarties``."""
    module = class_path.rpartition(".")[0]
    return module.rpartition(".")[2] or module


def task_of(class_path: str, component: str | None) -> str:
    """Task of an architecture without recorded facts (a component: feature extraction)."""
    if component is not None:
        return "feature-extraction"
    return ARCHITECTURE_TASKS.get(class_path.rpartition(".")[2], "feature-extraction")


def _band_key(name: str) -> str:
    """``B1``, ``B01`` and ``band_1`` compare equal (``B8A`` kept)."""
    upper = str(name).strip().upper()
    match = _BAND_NAME.match(upper)
    return f"B{int(match[1])}{match[2]}" if match else upper


def canonical_task(task: str | None) -> str | None:
    """A task name in the vocabulary of :class:`TaskFacts` (older names translated)."""
    return LEGACY_TASKS.get(task, task) if task else task


# ----------------------------------------------------------------------------- band tables
@dataclass
class BandInfo:
    """One band a model was trained on (FWHM / GSD None when the registry does not know it)."""

    name: str
    wavelength_nm: float
    fwhm_nm: float | None = None
    gsd_m: float | None = None

    @classmethod
    def of(cls, band: Band) -> BandInfo:
        """The registry facts of a band."""
        return cls(band.name, float(band.center_nm), float(band.fwhm_nm), float(band.gsd_m))


@dataclass
class SensorBands:
    """Band table of one sensor: its modality and the bands fed to the model, in order."""

    modality: str = "unknown"
    bands: list[BandInfo] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SensorBands:
        """Inverse of :meth:`to_dict`."""
        bands = [BandInfo(**{k: b.get(k) for k in ("name", "wavelength_nm", "fwhm_nm", "gsd_m")})
                 for b in data.get("bands") or []]  # fmt: skip
        return cls(str(data.get("modality") or "unknown"), bands)

    def to_dict(self) -> dict[str, Any]:
        """Front-matter form ``{modality, bands: [{name, wavelength_nm, fwhm_nm, gsd_m}]}``."""
        return {"modality": self.modality, "bands": [vars(b).copy() for b in self.bands]}

    @property
    def wavelengths(self) -> list[float]:
        """Centre wavelengths of the bands (nm)."""
        return [float(b.wavelength_nm) for b in self.bands]

    @property
    def band_names(self) -> list[str]:
        """Names of the bands."""
        return [b.name for b in self.bands]


def sensor_bands(
    sensor_name: str, band_names: Sequence[str] | None = None, stats: BandStats | None = None
) -> SensorBands:
    """Band table of a sensor from the registry, restricted to ``band_names`` (else to the
    statistics' bands, else every band); unregistered bands take the statistics' wavelengths.

    Raises:
        HubError: For a sensor that is neither registered nor described by statistics.
    """
    try:
        sensor: Sensor | None = get_sensor(sensor_name)
    except KeyError:
        sensor = None
    if sensor is None and stats is None:
        raise HubError(
            f"card names sensor {sensor_name!r}, which is neither registered nor has stats"
        )
    registry = {_band_key(b.name): b for b in sensor.bands} if sensor else {}
    from_stats = dict(zip(stats.band_names, stats.wavelengths, strict=True)) if stats else {}
    if band_names is None:
        band_names = stats.band_names if stats is not None else [b.name for b in sensor.bands]
    rows = []
    for name in band_names:
        band = registry.get(_band_key(name))
        if band is not None:
            rows.append(BandInfo.of(band))
        elif name in from_stats:
            rows.append(BandInfo(str(name), float(from_stats[name])))
        else:
            raise HubError(f"card: sensor {sensor_name!r} has no band {name!r} (no wavelength)")
    return SensorBands(sensor.modality if sensor else "unknown", rows)


def _sensor_tables(value: Any, stats: Mapping[str, BandStats]) -> dict[str, SensorBands]:
    """``card=`` sensors given as names, Sensors, SensorBands or band-table dicts."""
    if isinstance(value, Mapping):
        return {str(k): v if isinstance(v, SensorBands) else SensorBands.from_dict(v)
                for k, v in value.items()}  # fmt: skip
    tables = {}
    for item in value:
        if isinstance(item, Sensor):
            tables[item.name] = SensorBands(item.modality, [BandInfo.of(b) for b in item.bands])
        else:
            tables[str(item)] = sensor_bands(str(item), None, None)
    return tables


# ----------------------------------------------------------------------------- stages
@dataclass
class StageCard:
    """What one training stage saw, with full band tables (see :class:`TrainingStage`)."""

    stage: str
    sensors: dict[str, SensorBands] = field(default_factory=dict)
    bad_bands: dict[str, list[str]] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_stage(cls, stage: TrainingStage, stats: Mapping[str, BandStats]) -> StageCard:
        """Band tables for a checkpoint's stage (registry facts, else the stats' wavelengths)."""
        TrainingStage(stage.stage)  # validates the stage name
        tables = {name: sensor_bands(name, bands, stats.get(name))
                  for name, bands in stage.sensors.items()}  # fmt: skip
        return cls(stage.stage, tables, dict(stage.bad_bands), list(stage.datasets))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StageCard:
        """Inverse of :meth:`to_dict`."""
        TrainingStage(str(data["stage"]))  # validates the stage name
        return cls(
            stage=str(data["stage"]),
            sensors={
                str(k): SensorBands.from_dict(v) for k, v in (data.get("sensors") or {}).items()
            },  # fmt: skip
            bad_bands={str(k): list(v) for k, v in (data.get("bad_bands") or {}).items()},
            datasets=[dict(d) for d in data.get("datasets") or []],
        )

    def to_dict(self) -> dict[str, Any]:
        """Front-matter form."""
        return {
            "stage": self.stage,
            "sensors": {k: v.to_dict() for k, v in self.sensors.items()},
            "bad_bands": self.bad_bands,
            "datasets": self.datasets,
        }


@dataclass
class Architecture:
    """The network of the entry: registered name, class path, pushed component (if a part)."""

    name: str | None = None
    class_path: str = ""
    component: str | None = None


# ----------------------------------------------------------------------------- the card
@dataclass
class ModelCard:
    """Typed, versioned model card (the ``rsfm`` front matter plus the Hugging Face fields).

    Attributes:
        name: Hub name of the entry.
        version: Hub version of the entry.
        family: Model family (module of the class, e.g. ``smarties``).
        task: Task kind (see :class:`~rsfm.hub.checkpoint_keys.TaskFacts`).
        output: Default output kind of tiled inference (``classes``, ``probabilities``,
            ``values``, ``embeddings``, ``image``, ``quality``); None when unknown.
        class_names: Output class names, in index order.
        ignore_index: Label value excluded from loss and metrics.
        architecture: Registered name, class path and component.
        parameters: Parameter count.
        input_size: Training window side (px).
        patch_size: Encoder patch side (px).
        sensors: Band tables of the sensors of the last training stage.
        stages: What each training stage saw (pretraining, fine-tuning).
        normalization: Statistics of every sensor the model saw, ``{sensor: BandStats}``.
        gsd: Finest ground sampling distance of each listed sensor (m).
        metrics: ``{name: value}``.
        training: Hyper-parameters, steps, checkpoint name.
        extra: Family-specific task facts (e.g. a super-resolution ``scale``).
        license: License identifier.
        tags: Further Hugging Face tags (the derived ones, see :attr:`hf_tags`, are added on
            writing and dropped on reading).
        description: Free text.
        intended_use: Free text.
        schema_version: Schema of the front matter (1: before stages and output were recorded).
    """

    name: str | None = None
    version: str | None = None
    family: str = ""
    task: str = "feature-extraction"
    output: str | None = None
    class_names: list[str] | None = None
    ignore_index: int | None = None
    architecture: Architecture = field(default_factory=Architecture)
    parameters: int | None = None
    input_size: int | None = None
    patch_size: int | None = None
    sensors: dict[str, SensorBands] = field(default_factory=dict)
    stages: list[StageCard] = field(default_factory=list)
    normalization: dict[str, BandStats] = field(default_factory=dict)
    gsd: dict[str, float | None] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    license: str = DEFAULT_LICENSE
    tags: list[str] = field(default_factory=list)
    description: str = ""
    intended_use: str = _DEFAULT_INTENDED_USE
    schema_version: int = SCHEMA_VERSION

    # ------------------------------------------------------------------ views
    @property
    def hf_tags(self) -> list[str]:
        """All Hugging Face tags: rsfm, remote-sensing, earth-observation, the family, the
        sensors, then :attr:`tags`."""
        base = ["rsfm", "remote-sensing", "earth-observation", self.family, *self.sensors]
        return list(dict.fromkeys([t for t in base if t] + list(self.tags)))

    @property
    def pipeline_tag(self) -> str:
        """Hugging Face pipeline tag of the task."""
        return TASKS.get(str(self.task), (PIPELINE_TAG, None))[0]

    def stage(self, name: str) -> StageCard | None:
        """The stage called ``name`` (``pretraining`` / ``fine-tuning``), if recorded."""
        return next((s for s in self.stages if s.stage == name), None)

    def known_sensors(self) -> dict[str, SensorBands]:
        """Band tables of every sensor the model was trained on, the last stage's first."""
        tables = dict(self.sensors)
        for stage in reversed(self.stages):
            for name, table in stage.sensors.items():
                tables.setdefault(name, table)
        return tables

    def known_wavelengths(self) -> list[float]:
        """Centre wavelengths of every band of every stage and of every normalised sensor."""
        waves = [w for t in self.known_sensors().values() for w in t.wavelengths]
        return waves + [float(w) for s in self.normalization.values() for w in s.wavelengths]

    # ------------------------------------------------------------------ front matter
    @classmethod
    def from_front_matter(cls, data: Mapping[str, Any], source: str = "card.md") -> ModelCard:
        """Read a card's front matter (schema 1 or 2).

        Raises:
            HubError: Naming ``source`` when the ``rsfm`` section is missing, malformed, or
                of a newer schema.
        """
        info = data.get("rsfm")
        if not isinstance(info, Mapping):
            raise HubError(f"{source}: the card front matter has no 'rsfm' section")
        schema = int(info.get("schema_version") or 1)
        if schema > SCHEMA_VERSION:
            raise HubError(
                f"{source}: card schema {schema}; this rsfm reads up to {SCHEMA_VERSION}: "
                "upgrade rsfm"
            )
        arch = info.get("architecture") or {}
        family, sensors = str(info.get("family") or ""), list(info.get("sensors") or {})
        derived = {"rsfm", "remote-sensing", "earth-observation", family, *sensors}
        try:
            names = info.get("class_names")
            return cls(
                name=info.get("name"),
                version=None if info.get("version") is None else str(info["version"]),
                family=family,
                task=str(info.get("task") or "feature-extraction"),
                output=info.get("output"),
                class_names=[str(n) for n in names] if names is not None else None,
                ignore_index=info.get("ignore_index"),
                architecture=Architecture(
                    arch.get("name"), str(arch.get("class_path") or ""), arch.get("component")
                ),
                parameters=info.get("parameters"),
                input_size=info.get("input_size"),
                patch_size=info.get("patch_size"),
                sensors={
                    str(k): SensorBands.from_dict(v) for k, v in (info.get("sensors") or {}).items()
                },  # fmt: skip
                stages=[StageCard.from_dict(s) for s in info.get("stages") or []],
                normalization={
                    str(k): BandStats.from_dict(dict(v))
                    for k, v in (info.get("normalization") or {}).items()
                },  # fmt: skip
                gsd=dict(info.get("gsd") or {}),
                metrics=dict(info.get("metrics") or {}),
                training=dict(info.get("training") or {}),
                extra=dict(info.get("extra") or {}),
                license=str(data.get("license") or DEFAULT_LICENSE),
                tags=[str(t) for t in data.get("tags") or [] if t not in derived],
                description=str(info.get("description") or ""),
                intended_use=str(info.get("intended_use") or _DEFAULT_INTENDED_USE),
                schema_version=schema,
            )
        except (TypeError, ValueError, KeyError, AttributeError) as err:
            raise HubError(f"{source}: malformed rsfm card section: {err!r}") from None

    def to_front_matter(self) -> dict[str, Any]:
        """The front-matter dict (Hugging Face fields on top, rsfm facts under ``rsfm``)."""
        rsfm = {
            "schema_version": self.schema_version,
            "name": self.name,
            "version": self.version,
            "family": self.family,
            "task": self.task,
            "output": self.output,
            "class_names": self.class_names,
            "ignore_index": self.ignore_index,
            "architecture": vars(self.architecture).copy(),
            "parameters": self.parameters,
            "input_size": self.input_size,
            "patch_size": self.patch_size,
            "sensors": {k: v.to_dict() for k, v in self.sensors.items()},
            "stages": [s.to_dict() for s in self.stages],
            "gsd": self.gsd,
            "normalization": {k: v.to_dict() for k, v in self.normalization.items()},
            "metrics": self.metrics,
            "training": self.training,
            "extra": self.extra,
            "description": self.description,
            "intended_use": self.intended_use,
        }
        return jsonable(
            {
                "license": self.license,
                "library_name": "rsfm",
                "pipeline_tag": self.pipeline_tag,
                "tags": self.hf_tags,
                "rsfm": rsfm,
            }
        )

    def fields(self) -> dict[str, Any]:
        """This card's facts as :meth:`build` fields (all of :data:`CARD_FIELDS` but the
        entry's name, version and component): what a re-push of its model keeps."""
        kept = [f for f in CARD_FIELDS if f not in ("name", "version", "component")]
        return {f: getattr(self, f) for f in kept if getattr(self, f) not in (None, [], {}, "")}

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        config: Mapping[str, Any],
        card: Mapping[str, Any] | None = None,
        n_parameters: int | None = None,
    ) -> ModelCard:
        """The card of a new entry from its ``config.json`` and card fields.

        Args:
            config: The entry's ``config.json`` content.
            card: Fields among :data:`CARD_FIELDS`. ``normalization`` maps sensors to
                :class:`BandStats` (or their dicts); ``stages`` holds
                :class:`TrainingStage` / :class:`StageCard` (or dicts); ``sensors`` lists
                sensor names or band tables (default: the last stage's, else those of
                ``normalization``); the rest is derived from the config and the task.
            n_parameters: Parameter count recorded in the card.

        Raises:
            ValueError: For card fields that are not in :data:`CARD_FIELDS`.
            HubError: For sensors or bands without a known wavelength.
        """
        values = {k: v for k, v in (card or {}).items()}
        unknown = sorted(set(values) - set(CARD_FIELDS))
        if unknown:
            raise ValueError(f"unknown model-card field(s) {unknown}; allowed: {list(CARD_FIELDS)}")
        init_args = config.get("init_args", {})
        stats = {str(sensor): s if isinstance(s, BandStats) else BandStats.from_dict(dict(s))
                 for sensor, s in (values.get("normalization") or {}).items()}  # fmt: skip
        stages = [_stage_card(s, stats) for s in values.get("stages") or []]
        if values.get("sensors") is not None:
            sensors = _sensor_tables(values["sensors"], stats)
        elif stages:
            sensors = dict(stages[-1].sensors)
        else:
            sensors = {name: sensor_bands(name, None, s) for name, s in stats.items()}
        gsd = values.get("gsd")
        if gsd is None:
            gsd = {name: min((b.gsd_m for b in table.bands if b.gsd_m), default=None)
                   for name, table in sensors.items()}  # fmt: skip
        component = values.get("component")
        task = canonical_task(values.get("task")) or task_of(config["class_path"], component)
        output = values.get("output") or TASKS.get(task, (None, None))[1]
        names = values.get("class_names")
        return cls(
            name=values.get("name"),
            version=values.get("version"),
            family=values.get("family") or family_of(config["class_path"]),
            task=task,
            output=output,
            class_names=[str(n) for n in names] if names is not None else None,
            ignore_index=values.get("ignore_index"),
            architecture=Architecture(config.get("name"), config["class_path"], component),
            parameters=n_parameters,
            input_size=_first(values.get("input_size"), init_args.get("img_size")),
            patch_size=_first(values.get("patch_size"), init_args.get("patch_size")),
            sensors=sensors,
            stages=stages,
            normalization=stats,
            gsd=dict(gsd),
            metrics=jsonable(values.get("metrics") or {}),
            training=jsonable(values.get("training") or {}),
            extra=jsonable(values.get("extra") or {}),
            license=values.get("license") or DEFAULT_LICENSE,
            tags=[str(t) for t in values.get("tags") or []],
            description=values.get("description") or "",
            intended_use=values.get("intended_use") or _DEFAULT_INTENDED_USE,
        )


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _stage_card(value: Any, stats: Mapping[str, BandStats]) -> StageCard:
    if isinstance(value, StageCard):
        return value
    if isinstance(value, TrainingStage):
        return StageCard.from_stage(value, stats)
    first = next(iter((value.get("sensors") or {}).values()), None)
    if first is None or isinstance(first, Mapping):  # a card stage (band tables)
        return StageCard.from_dict(value)
    return StageCard.from_stage(TrainingStage.from_dict(value), stats)


def facts_fields(facts: TaskFacts | None, component: str | None = None) -> dict[str, Any]:
    """Card fields lifted from a task's facts (a pushed component keeps stages and sizes only).

    Args:
        facts: The task's facts (checkpoint key ``rsfm_task``), or None.
        component: The submodule pushed, if only a part (its task is feature extraction).
    """
    if facts is None:
        return {}
    lifted: dict[str, Any] = {
        "input_size": facts.input_size,
        "patch_size": facts.patch_size,
        "stages": list(facts.stages) or None,
    }
    if component is None:
        lifted.update(
            task=canonical_task(facts.task),
            output=facts.output,
            class_names=facts.class_names,
            ignore_index=facts.ignore_index,
            extra=facts.extra or None,
        )
    return {k: v for k, v in lifted.items() if v is not None}


__all__ = [
    "CARD_FIELDS",
    "SCHEMA_VERSION",
    "Architecture",
    "BandInfo",
    "ModelCard",
    "SensorBands",
    "StageCard",
    "facts_fields",
    "sensor_bands",
]

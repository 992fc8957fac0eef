"""The checkpoint -> card contract: what rsfm tasks write into a Lightning checkpoint.

One owner for the keys: :class:`rsfm.tasks.base.BaseTask` writes them (``on_save_checkpoint``)
and reads them back (``on_load_checkpoint``); :func:`rsfm.hub.store.push_checkpoint` lifts them
into the typed model card. Nothing else reads or writes these keys by hand.

Keys of the checkpoint dict:

- ``rsfm_model_config`` (:data:`MODEL_CONFIG`): the registry config of the network
  (``name``, ``class_path``, ``init_args``) that :func:`rsfm.models.registry.model_from_config`
  rebuilds.
- ``rsfm_band_stats`` (:data:`BAND_STATS`): ``{sensor: BandStats.to_dict()}``, the
  normalisation every sensor the model saw was fed with.
- ``rsfm_task`` (:data:`TASK`): :meth:`TaskFacts.to_dict`, the facts of the task.
- ``rsfm_ema_step`` (:data:`EMA_STEP`): optimisation step of a moving-average copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

MODEL_CONFIG = "rsfm_model_config"
BAND_STATS = "rsfm_band_stats"
TASK = "rsfm_task"
EMA_STEP = "rsfm_ema_step"

STAGES = ("pretraining", "fine-tuning")


@dataclass
class TrainingStage:
    """What one training stage saw.

    Attributes:
        stage: ``pretraining`` (the encoder's own training) or ``fine-tuning`` (the head).
        sensors: ``{sensor: [band names fed to the model]}``, bad bands excluded.
        bad_bands: ``{sensor: [band names dropped as bad]}`` (e.g. EnMAP water-vapour bands).
        datasets: Provenance: ``[{"name": ..., "files": [...], "sha256": {file: hex}}]``.
    """

    stage: str
    sensors: dict[str, list[str]] = field(default_factory=dict)
    bad_bands: dict[str, list[str]] = field(default_factory=dict)
    datasets: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingStage:
        """Inverse of ``dataclasses.asdict``."""
        return cls(
            stage=str(data["stage"]),
            sensors={str(k): list(v) for k, v in (data.get("sensors") or {}).items()},
            bad_bands={str(k): list(v) for k, v in (data.get("bad_bands") or {}).items()},
            datasets=[dict(d) for d in data.get("datasets") or []],
        )


@dataclass
class TaskFacts:
    """Facts a task records about itself (checkpoint key ``rsfm_task``, then the card).

    Attributes:
        task: Task kind: ``segmentation``, ``classification``, ``multilabel``, ``regression``,
            ``masked-image-modeling``, ``text-to-image``, ``super-resolution``,
            ``image-text-contrastive``, ``segmentation-quality-assessment``, ``co-learning``.
        output: What tiled inference writes by default: ``classes``, ``values``,
            ``embeddings``, ``image`` or ``quality``.
        class_names: Names of the output classes (index order), when the task has classes.
        ignore_index: Label value excluded from loss and metrics.
        input_size: Training window side in pixels.
        patch_size: Patch (token) size of the encoder in pixels.
        stages: What each training stage saw (see :class:`TrainingStage`).
        extra: Family-specific facts (e.g. ``scale`` of a super-resolution model).
    """

    task: str
    output: str | None = None
    class_names: list[str] | None = None
    ignore_index: int | None = None
    input_size: int | None = None
    patch_size: int | None = None
    stages: list[TrainingStage] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy for the checkpoint (``torch.load(weights_only=True)`` reads it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TaskFacts | None:
        """Facts from a checkpoint's ``rsfm_task``; None when absent.

        Older checkpoints wrote a flat dict (``task``, ``class_names``, ``scale`` ...): unknown
        keys land in :attr:`extra`.
        """
        if not data:
            return None
        known = {f for f in cls.__dataclass_fields__ if f not in ("stages", "extra")}
        extra = dict(data.get("extra") or {})
        extra.update({k: v for k, v in data.items() if k not in known | {"stages", "extra"}})
        names = data.get("class_names")
        return cls(
            **{k: data.get(k) for k in known if k != "class_names"},
            class_names=list(names) if names is not None else None,
            stages=[TrainingStage.from_dict(s) for s in data.get("stages") or []],
            extra=extra,
        )

    def stage(self, name: str) -> TrainingStage | None:
        """The stage called ``name``, if recorded."""
        return next((s for s in self.stages if s.stage == name), None)

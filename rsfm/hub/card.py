"""Model cards: YAML front matter readable by huggingface_hub, then a human-readable body.

The front matter keeps Hugging Face model-card metadata at the top level (``license``,
``library_name``, ``tags``, ``pipeline_tag``) and every rsfm fact under the ``rsfm`` key::

    rsfm:
      name / version / family / task
      architecture: {name, class_path, component}
      sensors: {sensor: {modality, bands: [{name, wavelength_nm, fwhm_nm, gsd_m}]}}
      normalization: {sensor: BandStats.to_dict()}
      gsd: {sensor: metres}
      input_size / patch_size / parameters
      metrics: {name: value}
      training: {hyper_parameters, global_step, epoch, ...}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from rsfm.band_stats import BandStats
from rsfm.hub.entry import HubError
from rsfm.sensors import Band, Sensor, get_sensor

DEFAULT_LICENSE = "apache-2.0"
PIPELINE_TAG = "image-feature-extraction"
CARD_FIELDS = (
    "name",
    "version",
    "family",
    "task",
    "component",
    "sensors",
    "normalization",
    "gsd",
    "input_size",
    "patch_size",
    "metrics",
    "training",
    "license",
    "tags",
    "description",
    "intended_use",
)
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
    """Default task of an architecture (``...MAE``: masked image modelling, else features)."""
    if component is None and class_path.endswith("MAE"):
        return "masked-image-modeling"
    return "feature-extraction"


def _band_dict(band: Band) -> dict[str, Any]:
    return {
        "name": band.name,
        "wavelength_nm": float(band.center_nm),
        "fwhm_nm": float(band.fwhm_nm),
        "gsd_m": float(band.gsd_m),
    }


def _band_rows(sensor_name: str, stats: BandStats | None) -> dict[str, Any]:
    """Band table of one sensor: registry facts, restricted to the statistics' bands if any."""
    try:
        sensor: Sensor | None = get_sensor(sensor_name)
    except KeyError:
        sensor = None
    registry = {b.name: b for b in sensor.bands} if sensor else {}
    if stats is None and sensor is None:
        raise HubError(
            f"card names sensor {sensor_name!r}, which is neither registered nor has stats"
        )
    rows = []
    if stats is None:
        names, waves = [b.name for b in sensor.bands], [b.center_nm for b in sensor.bands]
    else:
        names, waves = stats.band_names, stats.wavelengths
    for band_name, wavelength in zip(names, waves, strict=True):
        band = registry.get(band_name)
        unknown = {"name": band_name, "wavelength_nm": float(wavelength), "fwhm_nm": None}
        rows.append(_band_dict(band) if band else {**unknown, "gsd_m": None})
    return {"modality": sensor.modality if sensor else "unknown", "bands": rows}


def _sensor_table(value: Any) -> dict[str, Any]:
    """Card ``sensors`` given as names, Sensors or band-table dicts -> ``{name: table}``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    tables = {}
    for item in value:
        if isinstance(item, Sensor):
            tables[item.name] = {
                "modality": item.modality,
                "bands": [_band_dict(b) for b in item.bands],
            }
        else:
            tables[str(item)] = _band_rows(str(item), None)
    return tables


def build_metadata(
    config: Mapping[str, Any],
    card: Mapping[str, Any] | None = None,
    n_parameters: int | None = None,
) -> dict[str, Any]:
    """Front-matter dict of a card from a model config and user-given card fields.

    Args:
        config: The entry's ``config.json`` content.
        card: Fields among :data:`CARD_FIELDS`; ``normalization`` maps sensor names to
            :class:`BandStats` (or their dicts); ``sensors`` lists sensor names (default: those
            of ``normalization``); missing fields are derived from the config.
        n_parameters: Parameter count recorded in the card.

    Raises:
        ValueError: For card fields that are not in :data:`CARD_FIELDS`.
    """
    fields = dict(card or {})
    unknown = sorted(set(fields) - set(CARD_FIELDS))
    if unknown:
        raise ValueError(f"unknown model-card field(s) {unknown}; allowed: {list(CARD_FIELDS)}")
    init_args = config.get("init_args", {})
    stats = {
        str(sensor): s if isinstance(s, BandStats) else BandStats.from_dict(dict(s))
        for sensor, s in (fields.get("normalization") or {}).items()
    }
    if fields.get("sensors") is not None:
        sensors = _sensor_table(fields["sensors"])
    else:
        sensors = {name: _band_rows(name, s) for name, s in stats.items()}
    gsd = fields.get("gsd")
    if gsd is None:
        gsd = {
            name: min((b["gsd_m"] for b in table["bands"] if b.get("gsd_m")), default=None)
            for name, table in sensors.items()
        }
    component = fields.get("component")
    family = fields.get("family") or family_of(config["class_path"])
    rsfm = {
        "name": fields.get("name"),
        "version": fields.get("version"),
        "family": family,
        "task": fields.get("task") or task_of(config["class_path"], component),
        "architecture": {
            "name": config.get("name"),
            "class_path": config["class_path"],
            "component": component,
        },
        "parameters": n_parameters,
        "input_size": fields.get("input_size", init_args.get("img_size")),
        "patch_size": fields.get("patch_size", init_args.get("patch_size")),
        "sensors": sensors,
        "gsd": gsd,
        "normalization": {name: s.to_dict() for name, s in stats.items()},
        "metrics": fields.get("metrics") or {},
        "training": fields.get("training") or {},
        "description": fields.get("description") or "",
        "intended_use": fields.get("intended_use") or _DEFAULT_INTENDED_USE,
    }
    tags = ["rsfm", "remote-sensing", "earth-observation", family, *sensors]
    tags += [t for t in fields.get("tags") or [] if t not in tags]
    return jsonable(
        {
            "license": fields.get("license") or DEFAULT_LICENSE,
            "library_name": "rsfm",
            "pipeline_tag": PIPELINE_TAG,
            "tags": tags,
            "rsfm": rsfm,
        }
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _body(metadata: Mapping[str, Any], load_ref: str) -> str:
    rsfm = metadata["rsfm"]
    arch = rsfm["architecture"]
    title = f"{rsfm['name']}@{rsfm['version']}" if rsfm.get("name") else load_ref
    lines = [f"# {title}", ""]
    if rsfm.get("description"):
        lines += [rsfm["description"], ""]
    lines += [
        "## Model",
        "",
        f"- family: `{rsfm['family']}`, task: `{rsfm['task']}`",
        f"- architecture: `{arch['class_path']}`"
        + (f" (registered `{arch['name']}`)" if arch.get("name") else "")
        + (f", component `{arch['component']}`" if arch.get("component") else ""),
        f"- input size {_fmt(rsfm['input_size'])} px, patch size {_fmt(rsfm['patch_size'])} px"
        + (f", {rsfm['parameters']:,} parameters" if rsfm.get("parameters") else ""),
        f"- license: `{metadata['license']}`",
        "",
        "## Sensors and bands",
        "",
    ]
    if not rsfm["sensors"]:
        lines += ["No sensor recorded: the model takes any band set by wavelength.", ""]
    for sensor, table in rsfm["sensors"].items():
        stats = rsfm["normalization"].get(sensor)
        lines += [
            f"### {sensor} ({table.get('modality', 'unknown')}, "
            f"GSD {_fmt(rsfm['gsd'].get(sensor))} m)",
            "",
            "| # | band | wavelength (nm) | FWHM (nm) | GSD (m) | low | high | mean | std |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for i, band in enumerate(table["bands"]):
            norm = ["-"] * 4
            if stats and i < len(stats["mean"]):
                norm = [_fmt(stats[k][i]) for k in ("low", "high", "mean", "std")]
            lines.append(
                f"| {i} | {band['name']} | {_fmt(band['wavelength_nm'])} | "
                f"{_fmt(band.get('fwhm_nm'))} | {_fmt(band.get('gsd_m'))} | {' | '.join(norm)} |"
            )
        lines.append("")
    if any(abs(b["wavelength_nm"]) > 1e6 for t in rsfm["sensors"].values() for b in t["bands"]):
        lines += [
            "SAR channels carry a signed radar wavelength in nm (co-polarised positive, "
            "cross-polarised negative), the convention of `rsfm.sensors`.",
            "",
        ]
    if rsfm["normalization"]:
        lines += [
            "Normalisation: clip each band to [low, high] (percentiles "
            f"{next(iter(rsfm['normalization'].values()))['percentiles']}), then "
            "(x - mean) / std. The exact values are in the front matter (`rsfm.normalization`).",
            "",
        ]
    lines += [
        "## How to load",
        "",
        "```python",
        "import rsfm.hub",
        "",
        f'model = rsfm.hub.load("{load_ref}")  # verifies sha256 of every file, no pickle',
        "card = model.rsfm_card  # this front matter as a dict",
        "```",
        "",
        f"Command line: `rsfm hub show {load_ref}`, `rsfm hub verify {load_ref}`.",
        "",
        "## Intended use",
        "",
        rsfm["intended_use"],
        "",
    ]
    if rsfm["metrics"]:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in rsfm["metrics"].items()]
        lines.append("")
    if rsfm["training"]:
        lines += [
            "## Training",
            "",
            "```json",
            json.dumps(rsfm["training"], indent=2),
            "```",
            "",
        ]
    return "\n".join(lines)


def render_card(metadata: Mapping[str, Any], load_ref: str) -> str:
    """Full ``card.md`` text: YAML front matter (huggingface_hub's writer) and the body.

    Args:
        metadata: Output of :func:`build_metadata`.
        load_ref: The reference the "how to load" snippet uses (``name@version`` or a path).
    """
    front = ModelCardData(**metadata).to_yaml()
    return str(ModelCard(f"---\n{front}\n---\n\n{_body(metadata, load_ref)}"))


def parse_card(text: str, source: str = "card.md") -> dict[str, Any]:
    """The front matter of a card as a dict (parsed by huggingface_hub's ModelCard).

    Raises:
        HubError: If the card has no ``rsfm`` metadata.
    """
    try:
        data = ModelCard(text).data.to_dict()
    except Exception as err:  # huggingface_hub raises ValueError / yaml errors
        raise HubError(f"{source}: unreadable model card front matter: {err}") from None
    if not isinstance(data.get("rsfm"), dict):
        raise HubError(f"{source}: the card front matter has no 'rsfm' section")
    return data

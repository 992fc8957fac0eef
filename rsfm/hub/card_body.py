"""``card.md`` text: the typed card's front matter (huggingface_hub's writer) and a readable body.

The body shows what a newcomer needs before using the model: task and default output, class
names, what each training stage saw (sensors, bands, bad bands, datasets), band tables with their
normalisation, how to load, intended use, metrics and training settings.
"""

from __future__ import annotations

import json
import math
from typing import Any

from huggingface_hub import ModelCard as HFModelCard
from huggingface_hub import ModelCardData

from rsfm.hub.card import ModelCard, SensorBands, StageCard
from rsfm.hub.entry import HubError


def fmt(value: Any) -> str:
    """A number or value as the card body prints it."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)


def _model_lines(card: ModelCard) -> list[str]:
    arch = card.architecture
    lines = [
        "## Model",
        "",
        f"- family: `{card.family}`, task: `{card.task}`"
        + (f", default output: `{card.output}`" if card.output else ""),
        f"- architecture: `{arch.class_path}`"
        + (f" (registered `{arch.name}`)" if arch.name else "")
        + (f", component `{arch.component}`" if arch.component else ""),
        f"- input size {fmt(card.input_size)} px, patch size {fmt(card.patch_size)} px"
        + (f", {card.parameters:,} parameters" if card.parameters else ""),
        f"- license: `{card.license}`",
        "",
    ]
    if card.class_names:
        lines += ["## Classes", "", "| index | class |", "|---|---|"]
        lines += [f"| {i} | {name} |" for i, name in enumerate(card.class_names)]
        if card.ignore_index is not None:
            lines.append(f"\nLabel value {card.ignore_index} is ignored in loss and metrics.")
        lines.append("")
    return lines


def _stage_lines(stages: list[StageCard]) -> list[str]:
    if not stages:
        return []
    lines = ["## Training stages", ""]
    for stage in stages:
        lines.append(f"### {stage.stage}")
        lines.append("")
        for sensor, table in stage.sensors.items():
            lines.append(
                f"- {sensor} ({table.modality}): {len(table.bands)} bands "
                f"({', '.join(table.band_names)})"
            )
            if stage.bad_bands.get(sensor):
                lines.append(f"  - bad bands dropped: {', '.join(stage.bad_bands[sensor])}")
        for dataset in stage.datasets:
            files = dataset.get("files") or []
            hashes = dataset.get("sha256") or {}
            lines.append(
                f"- dataset `{dataset.get('name', '?')}`: {len(files)} file(s)"
                + (f", sha256 of {len(hashes)} recorded in the front matter" if hashes else "")
            )
        lines.append("")
    return lines


def _band_table(card: ModelCard, sensor: str, table: SensorBands) -> list[str]:
    stats = card.normalization.get(sensor)
    lines = [
        f"### {sensor} ({table.modality}, GSD {fmt(card.gsd.get(sensor))} m)",
        "",
        "| # | band | wavelength (nm) | FWHM (nm) | GSD (m) | low | high | mean | std |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, band in enumerate(table.bands):
        norm = ["-"] * 4
        if stats and i < len(stats.mean):
            norm = [fmt(getattr(stats, k)[i]) for k in ("low", "high", "mean", "std")]
        lines.append(
            f"| {i} | {band.name} | {fmt(band.wavelength_nm)} | {fmt(band.fwhm_nm)} | "
            f"{fmt(band.gsd_m)} | {' | '.join(norm)} |"
        )
    return [*lines, ""]


def _sensor_lines(card: ModelCard) -> list[str]:
    lines = ["## Sensors and bands", ""]
    if card.stages:
        lines += [f"Sensors of the last training stage ({card.stages[-1].stage}).", ""]
    if not card.sensors:
        lines += ["No sensor recorded: the model takes any band set by wavelength.", ""]
    for sensor, table in card.sensors.items():
        lines += _band_table(card, sensor, table)
    if any(abs(b.wavelength_nm) > 1e6 for t in card.sensors.values() for b in t.bands):
        lines += [
            "SAR channels carry a signed radar wavelength in nm (co-polarised positive, "
            "cross-polarised negative), the convention of `rsfm.sensors`.",
            "",
        ]
    others = [s for s in card.normalization if s not in card.sensors]
    if others:
        lines += [f"Normalisation statistics also cover: {', '.join(others)}.", ""]
    if card.normalization:
        lines += [
            "Normalisation: clip each band to [low, high] (percentiles "
            f"{list(next(iter(card.normalization.values())).percentiles)}), then "
            "(x - mean) / std. The exact values are in the front matter (`rsfm.normalization`).",
            "",
        ]
    return lines


def render_body(card: ModelCard, load_ref: str) -> str:
    """The markdown body of ``card.md``."""
    title = f"{card.name}@{card.version}" if card.name else load_ref
    lines = [f"# {title}", ""]
    if card.description:
        lines += [card.description, ""]
    lines += _model_lines(card) + _stage_lines(card.stages) + _sensor_lines(card)
    lines += [
        "## How to load",
        "",
        "```python",
        "import rsfm.hub",
        "",
        f'model = rsfm.hub.load("{load_ref}")  # verifies sha256 of every file, no pickle',
        "card = model.rsfm_card  # this front matter as a typed rsfm.hub.card.ModelCard",
        "```",
        "",
        f"Command line: `rsfm hub show {load_ref}`, `rsfm hub verify {load_ref}`.",
        "",
        "## Intended use",
        "",
        card.intended_use,
        "",
    ]
    if card.metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in card.metrics.items()]
        lines.append("")
    if card.training:
        lines += ["## Training", "", "```json", json.dumps(card.training, indent=2), "```", ""]
    return "\n".join(lines)


def render_card(card: ModelCard, load_ref: str) -> str:
    """Full ``card.md`` text: YAML front matter (huggingface_hub's writer) and the body.

    Args:
        card: The typed card.
        load_ref: The reference the "how to load" snippet uses (``name@version`` or a path).
    """
    front = ModelCardData(**card.to_front_matter()).to_yaml()
    return str(HFModelCard(f"---\n{front}\n---\n\n{render_body(card, load_ref)}"))


def parse_card(text: str, source: str = "card.md") -> ModelCard:
    """The typed card of a ``card.md`` text (front matter parsed by huggingface_hub).

    Raises:
        HubError: Naming ``source`` if the front matter is unreadable or has no ``rsfm`` section.
    """
    try:
        data = HFModelCard(text).data.to_dict()
    except Exception as err:  # huggingface_hub raises ValueError / yaml errors
        raise HubError(f"{source}: unreadable model card front matter: {err}") from None
    return ModelCard.from_front_matter(data, source)

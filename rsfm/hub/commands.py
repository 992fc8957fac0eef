"""``rsfm hub list|show|push|pull|verify``: the model hub from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from rsfm.hub.backends import DEFAULT_HUB_HELP
from rsfm.hub.entry import HubError

_HUB_HELP = DEFAULT_HUB_HELP


def _size(n_bytes: int | None) -> str:
    if n_bytes is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TB"


def _metric(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return key, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"metric {key!r} needs a number, got {value!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsfm hub", description="Share pretrained models: push, pull, list, show, verify."
    )
    sub = parser.add_subparsers(dest="action", required=True)
    listing = sub.add_parser("list", help="list the models of a hub")
    listing.add_argument("--hub", default=None, help=_HUB_HELP)
    show = sub.add_parser("show", help="show a model's files and card (hash-verified)")
    show.add_argument("name", help="NAME or NAME@VERSION")
    show.add_argument("--hub", default=None, help=_HUB_HELP)
    show.add_argument("--json", action="store_true", help="print the whole card front matter")
    push = sub.add_parser("push", help="push a Lightning checkpoint (or run folder)")
    push.add_argument("checkpoint", help="a .ckpt file or a run folder (uses last.ckpt)")
    push.add_argument("--name", required=True, help="model name")
    push.add_argument("--version", default=None, help="version (default: next)")
    push.add_argument("--component", default=None, help="push only a submodule, e.g. encoder")
    push.add_argument("--hub", default=None, help=_HUB_HELP)
    push.add_argument(
        "--metric",
        type=_metric,
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="metric for the card (repeatable)",
    )
    push.add_argument("--license", default=None, help="license id (default: apache-2.0)")
    push.add_argument("--best", action="store_true", help="run folder: best, not last.ckpt")
    push.add_argument("--overwrite", action="store_true", help="replace NAME@VERSION")
    push.add_argument(
        "--ema",
        action="store_true",
        help="push the moving-average weights (ema_model.*) of a diffusion task's checkpoint",
    )
    push.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow full unpickling of your own checkpoint",
    )
    pull = sub.add_parser("pull", help="copy a model from another hub (hash-verified)")
    pull.add_argument("name", help="NAME or NAME@VERSION")
    pull.add_argument("--from", dest="source", required=True, help="source hub")
    pull.add_argument("--hub", default=None, help=f"destination: {_HUB_HELP}")
    pull.add_argument("--overwrite", action="store_true", help="replace a differing entry")
    check = sub.add_parser("verify", help="check every file's sha256 against the index")
    check.add_argument("name", help="NAME or NAME@VERSION")
    check.add_argument("--hub", default=None, help=_HUB_HELP)
    return parser


def _print_list(hub: str | None) -> None:
    from rsfm.hub.backends import (
        LocalHub,
        list_models,  # reads index.json only: no torch
        open_hub,
    )
    from rsfm.hub.entry import HubError

    backend = open_hub(hub)
    if isinstance(backend, LocalHub) and not backend.root.is_dir():
        raise HubError(
            f"no hub at {backend.location} (the folder does not exist); check --hub, "
            "or create it with `rsfm hub push CHECKPOINT NAME --hub ...`"
        )
    rows = list_models(backend)
    if not rows:
        print(f"no models in {getattr(backend, 'searched', backend.location)}")
        return
    print(f"{'NAME':<28} {'VERSION':<10} {'LATEST':<6} {'SIZE':>10}  CREATED")
    for row in rows:
        latest = "*" if row["latest"] else ""
        print(
            f"{row['name']:<28} {row['version']:<10} {latest:<6} {_size(row['size']):>10}  "
            f"{row['created'] or '-'}"
        )


def _print_show(name: str, hub: str | None, as_json: bool) -> None:
    from rsfm.hub.store import describe

    entry, card = describe(name, hub)
    if as_json:
        print(json.dumps(card.to_front_matter(), indent=2))
        return
    arch = card.architecture
    print(f"{entry.ref.key}  ({entry.path})")
    print(f"  created   {entry.record.get('created')}")
    print(f"  license   {card.license}")
    print(f"  family    {card.family}   task {card.task}   output {card.output or '-'}")
    if card.class_names:
        print(f"  classes   {', '.join(card.class_names)}")
    component = f" [{arch.component}]" if arch.component else ""
    print(f"  model     {arch.class_path}{component}  ({arch.name or '-'})")
    print(
        f"  input     {card.input_size} px, patch {card.patch_size} px, "
        f"{card.parameters or '-'} parameters"
    )
    for stage in card.stages:
        print(f"  stage     {stage.stage}: {', '.join(stage.sensors) or '-'}")
    for sensor, table in card.sensors.items():
        bands = ", ".join(table.band_names)
        stats = "normalisation stats" if sensor in card.normalization else "no stats"
        print(
            f"  sensor    {sensor}: {len(table.bands)} bands ({bands}); "
            f"GSD {card.gsd.get(sensor)} m; {stats}"
        )
    for metric, value in card.metrics.items():
        print(f"  metric    {metric} = {value}")
    print("  files (sha256 verified)")
    for file_name, meta in entry.record["files"].items():
        print(f"    {file_name:<20} {_size(meta['size']):>10}  {meta['sha256']}")


def hub_main(argv: list[str]) -> int:
    """Run ``rsfm hub ...``; returns the exit code (1 on hub errors, printed to stderr)."""
    ns = _parser().parse_args(argv)
    try:
        if ns.action == "list":  # index.json only: torch is not imported
            _print_list(ns.hub)
            return 0
        from rsfm.hub import store

        if ns.action == "show":
            _print_show(ns.name, ns.hub, ns.json)
        elif ns.action == "push":
            extra = {"license": ns.license} if ns.license else {}
            ref = store.push_checkpoint(
                ns.checkpoint,
                ns.name,
                ns.version,
                ns.hub,
                component=ns.component,
                metrics=dict(ns.metric) if ns.metric else None,
                overwrite=ns.overwrite,
                best=ns.best,
                prefix="ema_model." if ns.ema else None,
                trusted=ns.trust_checkpoint,
                **extra,
            )
            print(f"pushed {ref.key} to {store.open_hub(ns.hub).location}")
        elif ns.action == "pull":
            ref = store.pull(ns.name, ns.source, ns.hub, overwrite=ns.overwrite)
            print(f"pulled {ref.key} into {store.open_hub(ns.hub).location}")
        else:
            entry = store.verify(ns.name, ns.hub)
            print(f"OK {entry.ref.key}: {len(entry.record['files'])} files match index.json")
    except (HubError, OSError, ValueError) as err:  # OSError: e.g. a read-only hub
        print(f"rsfm hub {ns.action}: error: {err}", file=sys.stderr)
        return 1
    return 0

"""``rsfm evaluate``: frozen-encoder protocols on catalogue datasets -> results.md + results.json.

The table always holds, beside the encoders asked for, a randomly initialised encoder of the
same architecture as each hub encoder, the raw-spectra baseline, on segmentation datasets the
matched filter and, on water datasets, the NDWI > 0 threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsfm.hub.backends import DEFAULT_HUB_HELP

# Encoder-free baselines added to every table (torch-free here, for a fast ``--help``).
BASELINES = ("raw", "ndwi", "mf")

DEFAULT_OUT = "evaluation"
PRIMARY_METRIC = {"segmentation": "mIoU", "classification": "accuracy", "multilabel": "mAP"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rsfm evaluate",
        description=(
            "Score frozen encoders on catalogue datasets with k-NN and linear probes (fitted on "
            "the train split, scored on the test split), several seeds; a random-init encoder "
            "of the same architecture and the raw-spectra baseline are always included."
        ),
    )
    parser.add_argument(
        "--encoder",
        nargs="+",
        default=[],
        metavar="E",
        help="hub model NAME@VERSION, random:NAME@VERSION, random:REGISTERED_NAME (baselines "
        "'raw', 'ndwi' and 'mf' are added automatically)",
    )
    parser.add_argument("--dataset", nargs="+", default=[], metavar="D", help="catalogue names")
    parser.add_argument(
        "--protocol",
        nargs="+",
        default=["knn", "linear"],
        choices=["knn", "linear", "frozen_head", "finetune", "predict"],
        help="knn / linear: frozen-feature probes; frozen_head: a UPerNet (pooled for "
        "classification) head trained on the frozen encoder; finetune: head and encoder "
        "trained; predict: apply a fine-tuned segmenter (normalised with its own card) to the "
        "test split, alone",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--head-steps",
        type=int,
        default=200,
        help="AdamW steps of the frozen_head / finetune heads (batches of 8 random 64 px crops)",
    )
    parser.add_argument("--data-root", default=None, help="folder holding the dataset folders")
    parser.add_argument("--hub", default=None, help=DEFAULT_HUB_HELP)
    parser.add_argument(
        "--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT}/)"
    )
    parser.add_argument(
        "--list", action="store_true", help="list the catalogue's datasets and exit"
    )
    return parser


def _architecture(ref: str, hub: str | None) -> str:
    """The model config of a hub entry (its architecture), or ``ref`` if it cannot be read."""
    from rsfm.hub import HubError, load_config

    try:
        return json.dumps(load_config(ref, hub), sort_keys=True)
    except (HubError, OSError):  # an unknown entry fails later with its own message
        return ref


def encoder_list(asked: Sequence[str], hub: str | None = None) -> list[str]:
    """The encoders asked for, each hub encoder followed by its random-init twin (one per
    architecture), then the baselines."""
    out: list[str] = []
    seen: set[str] = set()
    for text in asked:
        out.append(text)
        if not text.startswith("random:") and text not in BASELINES:
            architecture = _architecture(text, hub)
            if architecture not in seen:
                seen.add(architecture)
                out.append(f"random:{text}")
    out += list(BASELINES)
    return list(dict.fromkeys(out))


def _cell(row: dict[str, Any] | None) -> str:
    if row is None or row["mean"] != row["mean"]:
        return "–"
    if row["n_seeds"] > 1:
        return f"{row['mean']:.3f} ± {row['std']:.3f}"
    return f"{row['mean']:.3f}"


def markdown_table(rows: list[dict[str, Any]], encoders: Sequence[str]) -> str:
    """Per dataset, one row per encoder and one column per (protocol, metric): mean ± std."""
    cell = {(r["encoder"], r["dataset"], r["protocol"], r["metric"]): r for r in rows}
    blocks = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        columns = list(
            dict.fromkeys((r["protocol"], r["metric"]) for r in rows if r["dataset"] == dataset)
        )
        head = ["encoder"] + [f"{p} {m}" for p, m in columns]
        lines = [f"### {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for encoder in encoders:
            values = [_cell(cell.get((encoder, dataset, *c))) for c in columns]
            if any(v != "–" for v in values):
                lines.append("| " + " | ".join([f"`{encoder}`", *values]) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _list_datasets() -> int:
    from rsfm.data.catalogue import list_datasets

    for info in list_datasets():
        sensors = ", ".join(info.sensors)
        print(f"{info.name:22s} {info.task:16s} {sensors:34s} {info.title}")
    return 0


def evaluate_main(argv: list[str]) -> int:
    """Entry point of ``rsfm evaluate``."""
    args = _parser().parse_args(argv)
    if args.list:
        return _list_datasets()
    if not args.dataset:
        print(
            "rsfm evaluate: give --dataset NAME ... (see `rsfm evaluate --list`)", file=sys.stderr
        )
        return 2
    from tqdm.auto import tqdm

    from rsfm.data.catalogue import dataset_info, load_dataset
    from rsfm.evaluation.heads import HeadRecipe
    from rsfm.evaluation.protocols import EncoderSpec, evaluate_one, summarise

    for name in args.dataset:
        dataset_info(name)  # an unknown name fails here, before any work
    encoders = encoder_list(args.encoder, args.hub)
    results = []
    started = time.perf_counter()
    jobs = [(d, e, s) for d in args.dataset for e in encoders for s in args.seeds]
    splits: dict[str, tuple[Any, Any]] = {}
    cache: dict[tuple[str, str], Any] = {}
    for dataset, encoder, seed in tqdm(jobs, desc="evaluate", unit="run"):
        if encoder in BASELINES and seed != args.seeds[0]:
            continue  # deterministic: one seed is the whole story
        if dataset not in splits:
            splits[dataset] = (
                load_dataset(dataset, "train", args.data_root),
                load_dataset(dataset, "test", args.data_root),
            )
        results += evaluate_one(
            dataset, EncoderSpec(encoder), args.protocol, seed, hub=args.hub,
            splits=splits[dataset], cache=cache, recipe=HeadRecipe(steps=args.head_steps),
        )  # fmt: skip
    rows = summarise(results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "encoders": encoders,
        "datasets": args.dataset,
        "protocols": args.protocol,
        "seeds": args.seeds,
        "head_steps": args.head_steps,
        "command": "rsfm evaluate " + " ".join(argv),
        "wall_s": round(time.perf_counter() - started, 1),
        "summary": rows,
        "runs": [r.__dict__ for r in results],
    }
    (out / "results.json").write_text(json.dumps(record, indent=2))
    table = markdown_table(rows, encoders)
    (out / "results.md").write_text(
        f"# rsfm evaluate\n\n`{record['command']}` ({record['wall_s']} s)\n\n{table}\n"
    )
    print(table)
    print(f"results: {out / 'results.md'} and {out / 'results.json'}")
    return 0

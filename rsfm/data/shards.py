"""Chip shards: GeoTIFF scenes cut into training chips stored in LitData's streaming format.

``rsfm data chip INPUTS... --out DIR`` (:func:`chip_main`) / :func:`chip_scenes` write::

    DIR/index.json          LitData index: stream DIR with litdata.StreamingDataset / ShardDataset
    DIR/chunk-<s>-<k>.bin   the chunks of scene <s> (LitData's binary chunk format)
    DIR/band_stats.json     {sensor: BandStats} from the written chips' valid pixels
    DIR/manifest.json       counts (scenes, chips written, chips skipped and why), sha256 and
                            size of every file above, the options, rsfm and litdata versions

Resume: LitData has no resume for an ``optimize`` of generator items, so each scene is its own
``optimize`` run into ``DIR/.rsfm-chip/staging/<s>/``. When it ends, its chunk files are renamed
into ``DIR`` and a journal record (``.rsfm-chip/scenes/<s>.json``, written last, atomically) marks
the scene done. A killed run loses at most the scene in progress, which the next run with the
same inputs and options redoes from scratch; finished scenes are not read again. When every
scene is done, ``index.json`` (the scenes' chunk lists concatenated: ``litdata.merge_datasets``
would copy every chunk and refuses a single input), ``band_stats.json`` and ``manifest.json``
are written in that order and the work folder is removed. A run on a finished ``DIR`` with the
same inputs and options does nothing; other inputs or options are refused.

Samples (keys: :func:`rsfm.data.shards_write.sample_keys`, docs/shards.md) decode with
:class:`rsfm.data.shards_read.ShardDataset`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import math
import multiprocessing
import os
import random
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsfm.data.errors import RasterError
from rsfm.data.shards_read import ShardDataset, decode_sample, load_band_stats, load_manifest
from rsfm.data.shards_write import (
    BAND_STATS,
    FORMAT_VERSION,
    INDEX,
    MANIFEST,
    WORK_DIR,
    ChipError,
    SceneChipper,
    SceneInput,
    ScenePlan,
    _companions,
    _fingerprint,
    _finish,
    _Options,
    _plan_scene,
    _sensor_key,
    _write_json,
    expand_inputs,
    match_companions,
)
from rsfm.sensors import Sensor

__all__ = [
    "ChipError",
    "ChipResult",
    "SceneInput",
    "ShardDataset",
    "chip_main",
    "chip_scenes",
    "decode_sample",
    "load_band_stats",
    "load_manifest",
]

_CACHE_ENV = ("DATA_OPTIMIZER_CACHE_FOLDER", "DATA_OPTIMIZER_DATA_CACHE_FOLDER")


@dataclass
class ChipResult:
    """What :func:`chip_scenes` did.

    Attributes:
        out: The output folder.
        manifest: The manifest (counts, files, options).
        chipped: Scenes chipped by this call (empty when the output was already complete).
        resumed: Scenes a previous, interrupted call had finished.
        already_complete: The output was complete before the call: nothing was done.
    """

    out: Path
    manifest: dict[str, Any]
    chipped: list[str] = field(default_factory=list)
    resumed: int = 0
    already_complete: bool = False


# ----------------------------------------------------------------------------- litdata runs
@contextlib.contextmanager
def _litdata_sandbox(work: Path) -> Iterator[None]:
    """Run ``litdata.optimize`` without it touching the caller's process or other runs.

    optimize rmtree's its cache folders (``$TMPDIR/chunks`` and ``$TMPDIR/data`` unless told
    otherwise: a concurrent run elsewhere on the machine would lose its files), forces the
    multiprocessing start method, installs a SIGINT handler that exits with status 0 and reseeds
    the global RNGs; all of it is pointed at ``work``, replaced or put back here.
    """
    saved_env = {k: os.environ.get(k) for k in (*_CACHE_ENV, "DATA_OPTIMIZER_NUM_WORKERS")}
    os.environ[_CACHE_ENV[0]] = str(work / "cache" / "chunks")
    os.environ[_CACHE_ENV[1]] = str(work / "cache" / "data")
    start_method = multiprocessing.get_start_method(allow_none=True)
    handler = signal.getsignal(signal.SIGINT)
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    # LitData's SIGINT handler ends the process with os._exit(0): Ctrl-C would look like success.
    # Ours raises KeyboardInterrupt in this process (its forked workers just exit, status 130).
    processor = importlib.import_module("litdata.processing.data_processor").DataProcessor
    litdata_handler = processor.__dict__.get("_signal_handler")
    main_pid = os.getpid()

    def interrupt(self: Any, signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:
            os._exit(130)
        raise KeyboardInterrupt

    if litdata_handler is not None:
        processor._signal_handler = interrupt
    try:
        yield
    finally:
        if litdata_handler is not None:
            processor._signal_handler = litdata_handler
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        multiprocessing.set_start_method(start_method, force=True)
        with contextlib.suppress(ValueError, TypeError):  # not the main thread
            signal.signal(signal.SIGINT, handler)
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


def _worker_error(plan: ScenePlan, err: Exception) -> ChipError:
    """LitData passes a worker's traceback as text: keep its root cause (the first
    ``SomeError: message`` line)."""
    for line in str(err).splitlines():
        match = re.match(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt)): (.+)$", line.strip())
        if match:
            return ChipError(f"{plan.path}: chipping failed: {match[1]}: {match[2]}")
    return ChipError(f"{plan.path}: chipping failed: {' '.join(str(err).split())}")


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _end_children(before: set[int]) -> None:
    """Kill what a failed ``optimize`` left running: a failed LitData worker never stops its
    remover process, and multiprocessing's exit handler would wait for them forever."""
    for child in multiprocessing.active_children():
        if child.pid in before or child.pid is None:
            continue
        for pid in _descendants(child.pid):  # first, or they are re-parented out of reach
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        child.kill()
        child.join(timeout=10)


def _run_scene(
    plan: ScenePlan,
    opts: _Options,
    out: Path,
    work: Path,
    pixels_per_chip: int,
    with_mask: bool,
    workers: int,
    start_method: str,
) -> dict[str, Any]:
    """Chip one scene with its own ``litdata.optimize`` run, then commit it to ``out``."""
    import litdata

    staging = work / "staging" / plan.key
    shutil.rmtree(staging, ignore_errors=True)  # a run killed in this scene left it behind
    items_dir = staging / "items"
    items_dir.mkdir(parents=True)
    chipper = SceneChipper(
        plan,
        size=opts.size,
        max_nodata=opts.max_nodata,
        nonfinite=opts.nonfinite,
        pair_sensor=opts.pair_sensor,
        pixels_per_chip=pixels_per_chip,
        seed=opts.seed,
        items_dir=str(items_dir),
        with_mask=with_mask,
    )
    items = [(g, rows, cols) for g, (rows, cols) in enumerate(plan.groups)]
    shards = staging / "shards"
    children = {child.pid for child in multiprocessing.active_children()}
    with _litdata_sandbox(work):
        try:
            litdata.optimize(
                fn=chipper,
                inputs=items,
                output_dir=str(shards),
                chunk_bytes=opts.chunk_bytes,
                compression=opts.compression,
                num_workers=max(1, min(workers, len(items))),
                start_method=start_method,
                keep_data_ordered=True,  # static, ordered slices: same run, same chunks
                reorder_files=False,
                verbose=False,
            )
        except BaseException as err:
            _end_children(children)
            if isinstance(err, RuntimeError):
                raise _worker_error(plan, err) from err
            raise
    counts = {"windows": 0, "chips": 0, "nodata": 0, "pair_nodata": 0}
    pixels: dict[str, list[np.ndarray]] = {"image": [], "pair": []}
    for g, _, _ in items:
        with np.load(items_dir / f"{g:06d}.npz") as report:  # missing: a worker died silently
            for key in counts:
                counts[key] += int(report[f"count_{key}"])
            for role in pixels:
                if role in report:
                    pixels[role].append(report[role])
    index = json.loads((shards / INDEX).read_text())
    return _commit_scene(plan, chipper, counts, pixels, index, shards, out, work)


def _commit_scene(
    plan: ScenePlan,
    chipper: SceneChipper,
    counts: dict[str, int],
    pixels: dict[str, list[np.ndarray]],
    index: dict[str, Any],
    shards: Path,
    out: Path,
    work: Path,
) -> dict[str, Any]:
    """Rename the scene's chunks into ``out``, then write its journal record (last)."""
    for stale in out.glob(f"chunk-{plan.ordinal}-*"):  # a run killed between renames
        stale.unlink()
    chunks = []
    for k, chunk in enumerate(index["chunks"]):
        old = chunk["filename"]
        new = f"chunk-{plan.ordinal}-{k}{old[old.index('.') :]}"  # keeps .bin / .zstd.bin
        os.replace(shards / old, out / new)
        chunks.append({**chunk, "filename": new})
    sensors = {"image": chipper.dataset.sensor}
    if chipper.pair_dataset is not None:
        sensors["pair"] = chipper.pair_dataset.sensor
    arrays = {
        role: np.concatenate(parts, axis=1)
        for role, parts in pixels.items()
        if role in sensors and parts
    }
    scenes = work / "scenes"
    np.savez(scenes / f"{plan.key}.tmp.npz", **arrays)
    os.replace(scenes / f"{plan.key}.tmp.npz", scenes / f"{plan.key}.npz")
    tiled = plan.block[1] < plan.width
    record = {
        "ordinal": plan.ordinal,
        "source": plan.path,
        "label": plan.label,
        "pair": plan.pair,
        "time": plan.time,
        "sensors": {
            role: {
                "name": s.name,
                "band_names": s.band_names,
                "wavelengths": [float(w) for w in s.wavelengths],
            }
            for role, s in sensors.items()
        },
        "layout": f"tiled {plan.block[0]}x{plan.block[1]}" if tiled else "striped",
        "windows": counts["windows"],
        "chips": counts["chips"],
        "skipped": {"nodata": counts["nodata"], "pair_nodata": counts["pair_nodata"]},
        "chunks": chunks,
        "config": index.get("config"),
    }
    _write_json(scenes / f"{plan.key}.json", record)
    shutil.rmtree(shards.parent, ignore_errors=True)
    return record


def _empty_record(plan: ScenePlan) -> dict[str, Any]:
    """A scene smaller than one chip: nothing to run."""
    return {
        "ordinal": plan.ordinal,
        "source": plan.path,
        "label": plan.label,
        "pair": plan.pair,
        "time": plan.time,
        "sensors": {},
        "layout": "",
        "windows": 0,
        "chips": 0,
        "skipped": {"nodata": 0, "pair_nodata": 0},
        "chunks": [],
        "config": None,
    }


# ----------------------------------------------------------------------------- the driver
def _plan_document(scenes: list[SceneInput], opts: _Options) -> dict[str, Any]:
    """What the output depends on: a resumed or repeated run must match it."""
    return {
        "format_version": FORMAT_VERSION,
        "options": opts.to_dict(),
        "scenes": [
            {
                "file": _fingerprint(s.path),
                "sensor": _sensor_key(s.sensor),
                "time": s.datetime,
                "label": _fingerprint(s.label),
                "pair": _fingerprint(s.pair),
            }
            for s in scenes
        ],
    }


def _attach(scenes: list[SceneInput], label: Any, pair: Any) -> list[SceneInput]:
    """Scenes with their label / pair rasters; those rasters are no scenes themselves."""
    labels, pairs = _companions(label), _companions(pair)
    companions = set(labels) | set(pairs)
    scenes = [s for s in scenes if s.path not in companions]
    if not scenes:
        raise FileNotFoundError("every input is a label or pair raster: no scene left to chip")
    paths = [s.path for s in scenes]
    found_labels = match_companions(paths, labels, "label")
    found_pairs = match_companions(paths, pairs, "pair")
    attached = []
    for scene, lab, par in zip(scenes, found_labels, found_pairs, strict=True):
        par = scene.pair or par
        if pairs and par is None:
            raise RasterError(
                scene.path,
                f"no pair raster among the {len(pairs)} --pair file(s): give one per scene, "
                "named <scene stem>_<anything>.tif or on the scene's exact grid",
            )
        attached.append(
            SceneInput(scene.path, scene.sensor, scene.datetime, scene.label or lab, par)
        )
    return attached


def chip_scenes(
    inputs: Iterable[Any],
    out: str | os.PathLike[str],
    *,
    size: int = 128,
    stride: int | None = None,
    sensor: str | Sensor | None = None,
    label: Any = None,
    pair: Any = None,
    pair_sensor: str | Sensor | None = None,
    max_nodata: float = 0.5,
    edge: str = "snap",
    workers: int | None = None,
    chunk_bytes: int | str = "64MB",
    compression: str | None = None,
    nonfinite: str = "error",
    percentiles: tuple[float, float] = (1.0, 99.0),
    stats_max_pixels: int = 1_000_000,
    stats_pixels_per_chip: int = 1024,
    seed: int = 0,
    start_method: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> ChipResult:
    """Cut GeoTIFF scenes into chips and write them as LitData shards in ``out``.

    Args:
        inputs: Files, directories, globs, or objects with a ``.path`` (and optional
            ``.sensor``, ``.datetime``, ``.label``, ``.pair``), e.g. :class:`SceneInput`.
        out: Output folder (created; must be empty, or an earlier run's output to resume).
        size: Chip side in pixels.
        stride: Step between chips (default ``size``: no overlap).
        sensor: Registered sensor (name or ``Sensor``) of scenes without their own; None
            describes each file from its wavelength tags.
        label: Label rasters (files, directories, globs), matched to scenes by name or grid;
            read with nearest onto the scene grid as ``mask`` (-1 where a scene has none).
        pair: Rasters of a second, co-registered sensor (same grid), one per scene.
        pair_sensor: Sensor of the ``pair`` rasters.
        max_nodata: Chips with a larger fraction of invalid pixels are skipped and counted.
        edge: ``snap``: one more chip flush with the far edge where the stride leaves a strip;
            ``drop``: leave the strip.
        workers: LitData worker processes (default: up to 4, the CPU count).
        chunk_bytes: Chunk size (``"64MB"`` or bytes).
        compression: LitData chunk compression (``"zstd"`` needs the zstandard package).
        nonfinite: ``error`` refuses NaN/inf that is not nodata; ``mask`` leaves it invalid.
        percentiles: Clip percentiles of the band statistics.
        stats_max_pixels: Pixels per sensor the statistics rest on, at most.
        stats_pixels_per_chip: Valid pixels one chip gives the statistics, at most.
        seed: Seed of the statistics' pixel subsets.
        start_method: LitData's worker start method (default ``fork`` where available).
        progress: Show a progress bar (tqdm, on stderr).
        log: Receives status lines (resuming, nothing to do, scenes without labels).

    Returns:
        A :class:`ChipResult`.

    Raises:
        ValueError: On bad options, or an ``out`` made by other inputs or options.
        RasterError: Naming the file, on a raster that cannot be chipped.
        ChipError: If a worker failed, or no chip passed the nodata filter.
    """
    from tqdm.auto import tqdm

    say = log or (lambda _: None)
    stride = size if stride is None else stride
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be >= 1 pixel (got {size}, {stride})")
    if not 0.0 <= max_nodata <= 1.0:
        raise ValueError(f"max_nodata is a fraction in [0, 1] (got {max_nodata})")
    if edge not in ("snap", "drop"):
        raise ValueError(f"edge must be 'snap' or 'drop' (got {edge!r})")
    if nonfinite not in ("error", "mask"):
        raise ValueError(f"nonfinite must be 'error' or 'mask' (got {nonfinite!r})")
    opts = _Options(
        size, stride, edge, float(max_nodata), sensor, pair_sensor, nonfinite,
        int(chunk_bytes) if str(chunk_bytes).isdigit() else chunk_bytes, compression,
        (float(percentiles[0]), float(percentiles[1])), int(stats_max_pixels),
        int(stats_pixels_per_chip), int(seed),
    )  # fmt: skip
    out = Path(out).resolve()
    scenes = _attach(expand_inputs(inputs), label, pair)
    document = _plan_document(scenes, opts)
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    work = out / WORK_DIR
    if (out / MANIFEST).is_file():
        manifest = json.loads((out / MANIFEST).read_text())
        if manifest.get("plan_sha256") != digest:
            raise ValueError(
                f"{out} already holds chips of other inputs or options (its manifest.json); "
                "give another --out or delete that folder"
            )
        shutil.rmtree(work, ignore_errors=True)  # a run killed after its manifest
        counts = manifest["counts"]
        say(f"{out}: already complete ({counts['chips']} chips from {counts['scenes']} "
            "scenes); nothing to do")  # fmt: skip
        return ChipResult(out, manifest, already_complete=True)
    plan_file = work / "plan.json"
    if plan_file.is_file():
        if json.loads(plan_file.read_text()) != document:
            raise ValueError(
                f"{out} holds an unfinished run of other inputs or options ({plan_file}); "
                "re-run it with the same ones, or give another --out"
            )
    elif out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: the folder is not empty and holds no rsfm chip run")
    (work / "scenes").mkdir(parents=True, exist_ok=True)
    _write_json(plan_file, document)

    plans = [
        _plan_scene(i, s, sensor, opts.size, opts.stride, opts.edge) for i, s in enumerate(scenes)
    ]
    total = sum(p.windows for p in plans)
    pixels_per_chip = max(
        1, min(opts.stats_pixels_per_chip, math.ceil(stats_max_pixels / max(1, total)))
    )
    with_mask = any(p.label for p in plans)
    unlabelled = [p.path for p in plans if with_mask and not p.label]
    if unlabelled:
        say(f"{len(unlabelled)} scene(s) have no label raster (their mask is -1): "
            f"{', '.join(Path(p).name for p in unlabelled[:5])}")  # fmt: skip
    done = {p.key for p in plans if (work / "scenes" / f"{p.key}.json").is_file()}
    if done:
        say(f"resuming {out}: {len(done)} of {len(plans)} scenes were chipped before")
    workers = workers or min(4, os.cpu_count() or 1)
    start_method = start_method or (
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )
    chipped = []
    bar = tqdm(
        total=total,
        initial=sum(p.windows for p in plans if p.key in done),
        unit="window",
        desc="rsfm data chip",
        disable=not progress,
        file=sys.stderr,
    )
    with bar:
        for plan in plans:
            if plan.key in done:
                continue
            if plan.windows:
                _run_scene(plan, opts, out, work, pixels_per_chip, with_mask, workers, start_method)
            else:
                _write_json(work / "scenes" / f"{plan.key}.json", _empty_record(plan))
            chipped.append(plan.path)
            bar.update(plan.windows)
            bar.set_postfix_str(Path(plan.path).name)
    manifest = _finish(out, work, plans, opts, digest)
    shutil.rmtree(work, ignore_errors=True)
    return ChipResult(out, manifest, chipped=chipped, resumed=len(done))


# ----------------------------------------------------------------------------- the CLI
def chip_main(argv: list[str]) -> int:
    """``rsfm data chip INPUTS... --out DIR``: cut scenes into chips stored as LitData shards."""
    parser = argparse.ArgumentParser(
        prog="rsfm data chip",
        description="Cut GeoTIFF scenes into training chips written as LitData shards, with "
        "band statistics and a manifest. A killed run resumes where it stopped when re-run "
        "with the same arguments; a finished one is left as it is.",
    )
    parser.add_argument("inputs", nargs="+", help="GeoTIFF files, directories or globs")
    parser.add_argument("--out", type=Path, required=True, help="output folder (new or empty)")
    parser.add_argument("--size", type=int, default=128, help="chip side in pixels (128)")
    parser.add_argument("--stride", type=int, default=None, help="step between chips (--size)")
    parser.add_argument("--sensor", default=None, help="registered sensor (default: file tags)")
    parser.add_argument(
        "--labels", action="append", default=None, metavar="GLOB|DIR",
        help="label rasters, one per scene (by name <scene>_*.tif or on the scene's grid)",
    )  # fmt: skip
    parser.add_argument(
        "--pair", action="append", default=None, metavar="GLOB|DIR",
        help="co-registered rasters of a second sensor on the scenes' grid, one per scene",
    )  # fmt: skip
    parser.add_argument("--pair-sensor", default=None, help="sensor of the --pair rasters")
    parser.add_argument(
        "--max-nodata", type=float, default=0.5,
        help="skip chips with a larger fraction of nodata pixels (0.5)",
    )  # fmt: skip
    parser.add_argument(
        "--edge", choices=("snap", "drop"), default="snap",
        help="snap: a last chip flush with the far edge (default); drop: leave the strip",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=None, help="worker processes (<= 4)")
    parser.add_argument("--chunk-bytes", default="64MB", help="shard chunk size (64MB)")
    parser.add_argument(
        "--nonfinite", choices=("error", "mask"), default="error",
        help="NaN/inf pixels that are not nodata: refuse the file (default) or leave them out",
    )  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    ns = parser.parse_args(argv)
    result = chip_scenes(
        ns.inputs,
        ns.out,
        size=ns.size,
        stride=ns.stride,
        sensor=ns.sensor,
        label=ns.labels,
        pair=ns.pair,
        pair_sensor=ns.pair_sensor,
        max_nodata=ns.max_nodata,
        edge=ns.edge,
        workers=ns.workers,
        chunk_bytes=ns.chunk_bytes,
        nonfinite=ns.nonfinite,
        progress=not ns.no_progress,
        log=print,
    )
    counts, out = result.manifest["counts"], result.out
    n_chunks = sum(1 for name in result.manifest["files"] if name.startswith("chunk-"))
    if not result.already_complete:
        print(
            f"{counts['chips']} chips from {counts['scenes']} scenes "
            f"({counts['windows'] - counts['chips']} windows skipped: {counts['skipped']})"
        )
    print(
        f"shards: {out} (index.json + {n_chunks} chunk files), band statistics: "
        f"{out / BAND_STATS}, manifest: {out / MANIFEST}"
    )
    return 0

"""``rsfm tile MODEL INPUT... --out-dir DIR``: many scenes, each exactly once, resumable, STAC out.

INPUT is anything :func:`rsfm.data.inputs.resolve_inputs` takes (files, folders, globs,
``@list.txt``, STAC catalogs, collections, items and searches). Each scene is tiled by the
single-scene engine (:func:`rsfm.inference.command.tile_scene`); with ``--devices N`` (or
``--num-nodes``) Lightning runs N workers (:mod:`rsfm.inference.scenes_ddp`). Layout of DIR::

    <kind>/<scene>.tif              one COG per scene ("classes", "probabilities", ...)
    <kind>/<scene>.json             its STAC Item (provenance under ``rsfm:``)
    <kind>/collection.json          the STAC Collection of the kind
    <kind>.vrt                      the mosaic; <kind>-<crs>.vrt per CRS when scenes differ
    .rsfm-tile/<kind>/<scene>.json  the scene journal: done or failed, attempts, provenance
    .rsfm-tile/<kind>/<scene>.lock  held while a worker tiles the scene
    .rsfm-tile/events.jsonl         one line per scene started, done or failed (pid, rank)

A scene is done once its COG is renamed into place (the engine) and its journal record says so
(written after). A re-run skips done scenes made with the same model and options, retries
failed ones and resumes a scene a killed worker left half-written (the engine's own journal
beside the COG). See docs/tiling_at_scale.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsfm.inference.command import add_tile_options

if TYPE_CHECKING:
    from torch import nn

    from rsfm.data.inputs import RasterInput

STATE_DIR = ".rsfm-tile"
# Errors that come back identically on every attempt: not retried.
_PERMANENT = (
    "MissingCRSError",
    "BandMismatchError",
    "EmptyRasterError",
    "NonFiniteError",
    "EmptyOutputError",
    "TileRefusedError",
    "RemoteInputError",
)
_TABLE_ROWS = 50  # longer runs print the failed scenes only
# Options of ``rsfm tile`` that change the pixels of a scene's output.
_KEY_OPTIONS = (
    "kind", "sensor", "bands", "wavelengths", "tile_size", "overlap", "batch_size", "tta",
    "allow_missing_bands",
)  # fmt: skip


class RemoteInputError(ValueError):
    """A plain remote raster: the single-scene engine reads local files and STAC VRTs only."""


@dataclass(frozen=True)
class Scene:
    """One input scene and where its output goes (plain data: broadcast between ranks)."""

    id: str
    path: str
    source: str
    item_id: str | None = None
    hrefs: tuple[str, ...] = ()
    datetime: str | None = None


def scene_ids(inputs: list[RasterInput]) -> list[str]:
    """File-name-safe, unique scene ids: the STAC item id, else the file's stem (a short hash of
    the path is appended where two inputs share a name)."""
    names = []
    for found in inputs:
        stem = found.item_id or Path(found.source.rstrip("/").split("?")[0]).stem
        names.append(re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "scene")
    counts = {name: names.count(name) for name in names}
    return [
        name if counts[name] == 1 else f"{name}-{hashlib.sha1(f.path.encode()).hexdigest()[:8]}"
        for name, f in zip(names, inputs, strict=True)
    ]


def plan_scenes(inputs: list[RasterInput]) -> list[Scene]:
    """The scenes of resolved inputs, in input order."""
    return [
        Scene(
            id=name,
            path=found.path,
            source=found.source,
            item_id=found.item_id,
            hrefs=tuple(found.hrefs),
            datetime=found.datetime.isoformat() if found.datetime else None,
        )
        for name, found in zip(scene_ids(inputs), inputs, strict=True)
    ]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 4 MB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class SceneJournal:
    """Per-scene records and locks under ``DIR/.rsfm-tile/<kind>/`` (one small JSON per scene,
    replaced atomically, so workers never write the same file)."""

    def __init__(self, out_dir: Path, kind: str) -> None:
        self.out_dir, self.kind = Path(out_dir), kind
        self.folder = self.out_dir / STATE_DIR / kind
        self.folder.mkdir(parents=True, exist_ok=True)
        self.events_path = self.out_dir / STATE_DIR / "events.jsonl"

    def output(self, scene_id: str) -> Path:
        """The COG of a scene."""
        return self.out_dir / self.kind / f"{scene_id}.tif"

    def read(self, scene_id: str) -> dict[str, Any] | None:
        """A scene's record, None when there is none (or it cannot be read)."""
        try:
            return json.loads((self.folder / f"{scene_id}.json").read_text())
        except (OSError, ValueError):
            return None

    def write(self, scene_id: str, record: dict[str, Any]) -> None:
        """Replace a scene's record (temp file + fsync + rename)."""
        path = self.folder / f"{scene_id}.json"
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as handle:
            json.dump(record, handle, indent=1, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)

    def records(self) -> dict[str, dict[str, Any]]:
        """Every scene record of the kind, by scene id."""
        out = {}
        for path in sorted(self.folder.glob("*.json")):
            record = self.read(path.stem)
            if record is not None:
                out[path.stem] = record
        return out

    def is_done(self, scene_id: str, key: str) -> bool:
        """Whether the scene was finished by a run with the same model and options."""
        record = self.read(scene_id)
        return (
            record is not None
            and record.get("status") == "done"
            and record.get("run_key") == key
            and self.output(scene_id).is_file()
        )

    def lock(self, scene_id: str) -> Any:
        """The scene's lock (``filelock``: released by the OS when its holder dies)."""
        from filelock import FileLock

        return FileLock(self.folder / f"{scene_id}.lock", timeout=0)

    def event(self, **fields: Any) -> None:
        """Append one line to the event log (one ``write`` of an ``O_APPEND`` file)."""
        line = json.dumps({"time": time.time(), "kind": self.kind, **fields}) + "\n"
        handle = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(handle, line.encode())
        finally:
            os.close(handle)


def run_key(model: nn.Module, args: argparse.Namespace, kind: str) -> str:
    """What a finished scene must have been made with to be skipped: the model's entry and
    weights and the options that change pixels."""
    card = getattr(model, "rsfm_card", None)
    feed = {
        "model": model_ref(model, args),
        "weights": getattr(model, "rsfm_weights_sha256", None),
        **{k: (kind if k == "kind" else getattr(args, k, None)) for k in _KEY_OPTIONS},
        "card_version": getattr(card, "version", None),
    }
    return hashlib.sha256(json.dumps(feed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def model_ref(model: nn.Module, args: argparse.Namespace) -> str:
    """``name@version`` of a hub model (else the name given)."""
    card = getattr(model, "rsfm_card", None)
    if card is not None and getattr(card, "name", None):
        return f"{card.name}@{card.version}"
    return str(args.model)


@dataclass
class Outcome:
    """What one worker did with one scene (``record`` is written by :meth:`SceneWorker.commit`)."""

    scene: Scene
    status: str  # done | failed | skipped | busy
    record: dict[str, Any] = field(default_factory=dict)
    lock: Any = None


class SceneWorker:
    """Tiles scenes one at a time with a loaded model; what every rank runs.

    Args:
        model: The hub model (on ``args.device``).
        args: Parsed ``rsfm tile`` options (``device`` set).
        kind: Output kind.
        out_dir: The output folder.
        retries: Extra attempts for a scene that fails (not for a permanent input problem).
        rank: Global rank, recorded in the journal.
    """

    def __init__(
        self,
        model: nn.Module,
        args: argparse.Namespace,
        kind: str,
        out_dir: Path,
        retries: int = 0,
        rank: int = 0,
    ) -> None:
        self.model, self.args, self.kind = model, args, kind
        self.out_dir, self.retries, self.rank = Path(out_dir), retries, rank
        self.key = run_key(model, args, kind)
        self.retry_wait = 1.0

    @property
    def journal(self) -> SceneJournal:
        """The scene journal (built on use, so a worker pickles without file handles)."""
        return SceneJournal(self.out_dir, self.kind)

    def say(self, scene: Scene, message: str) -> None:
        """A message about one scene, on stderr."""
        print(f"rsfm tile: {scene.id}: {message}", file=sys.stderr, flush=True)

    def process(self, scene: Scene) -> Outcome:
        """Tile one scene unless it is done or another worker holds it; never raises for a
        failed scene (the outcome says why). The scene's lock is held until :meth:`commit`."""
        from filelock import Timeout

        from rsfm.inference.command import tile_scene

        journal = self.journal
        if not self.args.no_resume and journal.is_done(scene.id, self.key):
            return Outcome(scene, "skipped", journal.read(scene.id) or {})
        lock = journal.lock(scene.id)
        try:
            lock.acquire()
        except Timeout:
            return Outcome(scene, "busy", {"error": "another rsfm tile run holds the scene"})
        if not self.args.no_resume and journal.is_done(scene.id, self.key):  # done meanwhile
            lock.release()
            return Outcome(scene, "skipped", journal.read(scene.id) or {})
        output = journal.output(scene.id)
        output.parent.mkdir(parents=True, exist_ok=True)
        started, error, attempts = time.perf_counter(), None, 0
        for attempt in range(1 + max(self.retries, 0)):
            attempts = attempt + 1
            journal.event(scene=scene.id, event="start", attempt=attempts, rank=self.rank,
                          pid=os.getpid())  # fmt: skip
            try:
                if scene.path.startswith("/vsi"):
                    raise RemoteInputError(
                        f"{scene.source}: a remote raster; the tiler reads local files and "
                        "STAC items (their VRT): download it or give its STAC item"
                    )
                run = tile_scene(
                    self.model, self.args, Path(scene.path), output, self.kind,
                    progress=False, notice=lambda message: self.say(scene, message),
                )  # fmt: skip
            except Exception as err:  # noqa: BLE001 - one scene's failure is reported, not fatal
                error = err
                permanent = type(err).__name__ in _PERMANENT
                self.say(scene, f"attempt {attempts} failed: {_one_line(err)}")
                if permanent or attempt == self.retries:
                    break
                time.sleep(self.retry_wait * 2**attempt)
                continue
            record = self._provenance(scene, run, output)
            record.update(attempts=attempts, seconds=round(time.perf_counter() - started, 3))
            return Outcome(scene, "done", record, lock)
        record = {
            "scene": scene.id, "status": "failed", "run_key": self.key, "source": scene.source,
            "error": _one_line(error), "error_type": type(error).__name__, "attempts": attempts,
            "rank": self.rank, "pid": os.getpid(), "finished": _now(),
        }  # fmt: skip
        return Outcome(scene, "failed", record, lock)

    def commit(self, outcome: Outcome) -> None:
        """Record a processed scene (journal + STAC item) and release its lock."""
        try:
            if outcome.status == "done":
                from rsfm.inference.scenes_outputs import write_item

                write_item(self.out_dir, self.kind, outcome.record)
            if outcome.status in ("done", "failed"):
                self.journal.write(outcome.scene.id, outcome.record)
                self.journal.event(scene=outcome.scene.id, event=outcome.status,
                                   rank=self.rank, pid=os.getpid())  # fmt: skip
        finally:
            if outcome.lock is not None:
                outcome.lock.release()
                outcome.lock = None

    def _provenance(self, scene: Scene, run: Any, output: Path) -> dict[str, Any]:
        from rsfm import __version__

        local = Path(scene.path)
        is_file = local.suffix.lower() != ".vrt" and local.is_file()
        report = run.report
        return {
            "scene": scene.id,
            "status": "done",
            "run_key": self.key,
            "output": str(output.relative_to(self.out_dir)),
            "output_sha256": file_sha256(output),
            "input": {
                "source": scene.source,
                "path": scene.path,
                "item_id": scene.item_id,
                "hrefs": list(scene.hrefs),
                "sha256": file_sha256(local) if is_file else None,
                "datetime": scene.datetime,
            },
            "model": model_ref(self.model, self.args),
            "weights_sha256": getattr(self.model, "rsfm_weights_sha256", None),
            "resume_key": run.resume_key,
            "options": {
                **{k: getattr(self.args, k, None) for k in _KEY_OPTIONS if k != "kind"},
                "kind": self.kind,
                "tile_size": run.tile_size,
                "overlap": run.overlap,
                "bands": run.bands,
                "wavelengths": [float(w) for w in run.wavelengths],
            },
            "class_names": run.class_names,
            "rsfm_version": __version__,
            "tiles": report.tiles_total,
            "tiles_resumed": report.tiles_resumed,
            "resumed_from_row": report.resumed_from_row,
            "rank": self.rank,
            "pid": os.getpid(),
            "finished": _now(),
        }


def _one_line(err: BaseException | None) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_local(worker: SceneWorker, scenes: list[Scene]) -> None:
    """Tile scenes one after another in this process."""
    for scene in scenes:
        outcome = worker.process(scene)
        worker.commit(outcome)
        if outcome.status == "done":
            worker.say(scene, f"done in {outcome.record['seconds']:.1f}s")


def report(journal: SceneJournal, scenes: list[Scene], pending: set[str]) -> int:
    """Print the run's table (every scene, or only failures for long runs); 1 if any failed."""
    rows, failed = [], 0
    for scene in scenes:
        record = journal.read(scene.id) or {}
        status = record.get("status", "not run")
        if scene.id not in pending and status == "done":
            status = "skipped (done before)"
        elif status == "done" and record.get("tiles_resumed"):
            status = "resumed"
        bad = status in ("failed", "not run")
        failed += bad
        if bad or len(scenes) <= _TABLE_ROWS:
            note = record.get("error", "") if bad else record.get("output", "")
            if status == "not run":
                note = "not finished (another run holds it, or a worker stopped): re-run"
            rows.append((scene.id, status, str(record.get("attempts", "-")), note))
    width = max([len("scene"), *(len(r[0]) for r in rows)])
    out = sys.stdout if not failed else sys.stderr
    print(f"{'scene':<{width}}  {'status':<21}  tries  output / error", file=out)
    for name, status, attempts, note in rows:
        print(f"{name:<{width}}  {status:<21}  {attempts:>5}  {note}", file=out)
    done = len(scenes) - failed
    print(
        f"rsfm tile: {done} of {len(scenes)} scenes done ({len(pending)} tiled this run), "
        f"{failed} failed; outputs in {journal.out_dir / journal.kind}",
        file=out,
    )
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """``rsfm tile MODEL INPUT... --out-dir DIR`` options."""
    parser = argparse.ArgumentParser(
        prog="rsfm tile",
        usage="rsfm tile MODEL INPUT [INPUT ...] --out-dir DIR [options]",
        description="Tile many scenes with a hub model: one COG per scene, a VRT mosaic and STAC "
        "Items + Collection; finished scenes are skipped on re-run, failed ones retried and "
        "reported (exit 1). Workers: --devices N (Lightning DDP).",
    )
    parser.add_argument("model", help="hub name[@version] or entry folder")
    parser.add_argument(
        "inputs",
        nargs="+",
        help="GeoTIFFs, folders, globs, @list.txt, STAC catalog/collection/item JSON, "
        "stac+https://api?collections=..&bbox=.. searches",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="output folder")
    add_tile_options(parser)
    parser.add_argument("--retries", type=int, default=1, help="extra attempts per failed scene")
    parser.add_argument(
        "--accelerator", default="auto", choices=["auto", "cpu", "gpu", "cuda"],
        help="auto: gpu when available",
    )  # fmt: skip
    parser.add_argument("--devices", type=int, default=1, help="workers per node (DDP if > 1)")
    parser.add_argument("--num-nodes", type=int, default=1, help="nodes (DDP; torchrun/SLURM)")
    parser.add_argument(
        "--assets", default=None, help="STAC asset keys to stack, comma-separated (band order)"
    )
    return parser


def scenes_main(argv: list[str]) -> int:
    """Run ``rsfm tile`` over many scenes; exit 1 when any scene failed."""
    args = build_parser().parse_args(argv)
    if args.retries < 0 or args.devices < 1 or args.num_nodes < 1:
        print("rsfm tile: error: --retries >= 0, --devices >= 1, --num-nodes >= 1", file=sys.stderr)
        return 2
    import torch

    from rsfm.data.inputs import resolve_inputs
    from rsfm.hub import load
    from rsfm.inference.command import TILE_HOOKS, TileRefusedError, output_kind

    if args.accelerator == "auto":
        args.accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    args.accelerator = "gpu" if args.accelerator == "cuda" else args.accelerator
    distributed = args.devices > 1 or args.num_nodes > 1 or "WORLD_SIZE" in os.environ
    args.device = "cuda" if args.accelerator == "gpu" else "cpu"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    assets = args.assets.split(",") if args.assets else None
    inputs = resolve_inputs(args.inputs, sensor=args.sensor, assets=assets)
    if not inputs:
        print(f"rsfm tile: error: {' '.join(args.inputs)}: names no raster", file=sys.stderr)
        return 2
    scenes = plan_scenes(inputs)
    model = load(args.model, hub=args.hub, device="cpu" if distributed else args.device)
    card = getattr(model, "rsfm_card", None)
    if card is not None and card.output in TILE_HOOKS:
        print(f"rsfm tile: error: {args.model}: its {card.output} maps are tiled one scene at "
              "a time: rsfm tile MODEL IN.tif OUT.tif", file=sys.stderr)  # fmt: skip
        return 2
    try:
        kind = output_kind(model, card, args.kind, args.model)
    except TileRefusedError as err:
        print(f"rsfm tile: error: {err}", file=sys.stderr)
        return 2
    worker = SceneWorker(model, args, kind, args.out_dir, retries=args.retries)
    journal = worker.journal
    pending = [s for s in scenes if args.no_resume or not journal.is_done(s.id, worker.key)]
    if distributed:
        from rsfm.inference.scenes_ddp import run_ddp

        if run_ddp(worker, pending, args) != 0:
            return 0  # rank 0 writes the mosaics, the collection and the report
    else:
        run_local(worker, pending)
    from rsfm.inference.scenes_outputs import write_collection, write_mosaics

    for path in write_mosaics(args.out_dir, kind, journal.records()):
        print(path)
    print(write_collection(args.out_dir, kind, journal.records()))
    return report(journal, scenes, {s.id for s in pending})

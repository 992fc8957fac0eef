"""Benchmark: wall seconds of ``rsfm ... --help`` in fresh processes, against ``python -c pass``.

Each command runs ``--repeats`` times in a new interpreter (interleaved with the others, so a
burst of load hits every command alike); the script prints the median wall seconds per command,
its ratio to the interpreter start-up baseline measured in the same run, and which heavy
libraries (torch, lightning, rasterio, ...) the command imported. Only ``rsfm fit --help-all`` is
expected to import lightning (it is LightningCLI's full help).

Usage::

    python tools/bench/cli_help.py                  # every command, 5 runs each
    python tools/bench/cli_help.py --repeats 3 --only tile hub
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "lightning", "rasterio", "diffusers", "open_clip", "matplotlib", "torchgeo")

COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--help",),
    ("tile", "--help"),
    ("generate", "--help"),
    ("super-resolve", "--help"),
    ("assess", "--help"),
    ("hub", "--help"),
    ("hub", "list", "--help"),
    ("hub", "show", "--help"),
    ("hub", "push", "--help"),
    ("hub", "pull", "--help"),
    ("hub", "verify", "--help"),
    ("data", "--help"),
    ("data", "sensors", "--help"),
    ("data", "synthetic", "--help"),
    ("data", "stats", "--help"),
    ("fit", "--help"),
    ("fit", "--help-all"),
)

# Runs one command in-process and reports, at exit, which heavy libraries it imported.
_PROBE = """
import atexit, json, sys
heavy = {heavy!r}
atexit.register(lambda: sys.stderr.write(
    "\\nRSFM_HEAVY=" + json.dumps(sorted(h for h in heavy if h in sys.modules)) + "\\n"))
from rsfm.cli import main
sys.argv = ["rsfm", *{args!r}]
raise SystemExit(main({args!r}))
"""


def _run(command: list[str]) -> float:
    """Wall seconds of one fresh process running ``command`` (NaN when it fails)."""
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        print(f"{' '.join(command)} failed: {result.stderr.decode()[-300:]}", file=sys.stderr)
        return float("nan")
    return elapsed


def heavy_imports(args: tuple[str, ...]) -> list[str]:
    """The heavy libraries that ``rsfm *args`` imports (run once, in a fresh process)."""
    code = _PROBE.format(heavy=HEAVY, args=list(args))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    for line in result.stderr.splitlines():
        if line.startswith("RSFM_HEAVY="):
            return json.loads(line.removeprefix("RSFM_HEAVY="))
    return ["(failed)"]


def main() -> None:
    """Parse options, time every command, print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per command")
    parser.add_argument(
        "--only", nargs="*", default=None, help="these commands (and `rsfm --help`) only"
    )
    ns = parser.parse_args()
    wanted = set(ns.only or ())
    commands = [c for c in COMMANDS if not ns.only or c[0] in wanted or c == ("--help",)]
    rsfm = [sys.executable, "-m", "rsfm.cli"]
    baseline_cmd = [sys.executable, "-c", "pass"]

    times: dict[tuple[str, ...], list[float]] = {c: [] for c in commands}
    baseline: list[float] = []
    for command in commands:  # warm the file cache once, untimed
        _run([*rsfm, *command])
    for _ in range(ns.repeats):
        baseline.append(_run(baseline_cmd))
        for command in commands:
            times[command].append(_run([*rsfm, *command]))

    base = statistics.median(baseline)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load[0]:.2f}")
    print(f"baseline `python -c pass`: {base:.3f} s (median of {ns.repeats})\n")
    print(f"{'command':<28} {'median s':>9} {'x baseline':>11}  heavy imports")
    for command in commands:
        median = statistics.median(times[command])
        heavy = ", ".join(heavy_imports(command)) or "-"
        print(f"{'rsfm ' + ' '.join(command):<28} {median:>9.2f} {median / base:>11.1f}  {heavy}")


if __name__ == "__main__":
    main()

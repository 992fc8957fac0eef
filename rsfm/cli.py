"""The ``rsfm`` command: ``fit|validate|test|predict`` (LightningCLI) plus six plain commands.

How the command stays fast (``rsfm --help`` and every plain command's ``--help`` import no
torch):

* ``rsfm data|hub|tile|generate|super-resolve|assess`` import only their own command module,
  which builds its ``argparse`` parser from the standard library; torch, rasterio, diffusers,
  open_clip and matplotlib load inside the command, after the arguments are parsed.
* ``rsfm fit|validate|test|predict`` import Lightning and the modules in :data:`CORE_MODULES`
  (MAE pre-training, fine-tuning and their datamodules: torch, Lightning, timm, torchgeo). Every
  other class -- CLIP, text-to-image, super-resolution, SQA, co-learning, hyperspectral, the
  curation datamodules -- is imported by jsonargparse from the full dotted ``class_path`` the
  config names (``class_path: rsfm.tasks.clip.CLIPTask``), so open_clip or diffusers load only
  for the runs that use them. Short names (``class_path: MAEPretrainTask``) resolve for the core
  classes only, and ``rsfm fit --help`` lists those; every shipped config uses full paths
  (``tests/test_configs.py`` parses each one).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lightning.pytorch.cli import LightningCLI

LIGHTNING_COMMANDS = {"fit", "validate", "test", "predict"}

# Subcommands outside LightningCLI: name -> "module:function(argv) -> exit code".
COMMANDS = {
    "data": "rsfm.cli:data_main",
    "hub": "rsfm.hub.commands:hub_main",
    "tile": "rsfm.inference.command:tile_main",
    "generate": "rsfm.inference.generate:generate_main",
    "super-resolve": "rsfm.inference.super_resolve:super_resolve_main",
    "assess": "rsfm.inference.assess:assess_main",
    "evaluate": "rsfm.evaluation.command:evaluate_main",
}

# Imported for every Lightning command: the classes short names resolve to. Other families are
# imported by jsonargparse from their full ``class_path`` (see the module docstring).
CORE_MODULES = (
    "rsfm.data.datamodules.pretrain",
    "rsfm.data.datamodules.labelled",
    "rsfm.tasks.mae",
    "rsfm.tasks.classification",
    "rsfm.tasks.segmentation",
    "rsfm.tasks.regression",
)


def lightning_main(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Run LightningCLI with any rsfm task / datamodule selected by ``class_path`` in YAML.

    Args:
        args: Command-line arguments (default: ``sys.argv[1:]``).
        run: Whether to run the subcommand (False: only build the objects, for tests).

    Returns:
        The LightningCLI instance.
    """
    import lightning.pytorch as pl
    from lightning.pytorch.cli import LightningCLI

    for module in CORE_MODULES:
        importlib.import_module(module)

    class RsfmCLI(LightningCLI):
        """LightningCLI that ends ``fit`` with where everything went and what to do next."""

        def after_fit(self) -> None:
            """Print checkpoints, final metrics, config, logs and the push command."""
            from rsfm.tasks.run_summary import run_summary

            summary = run_summary(self.trainer)  # every rank: trainer.log_dir broadcasts
            if self.trainer.is_global_zero:
                print(summary, flush=True)

    return RsfmCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def data_main(argv: list[str]) -> int:
    """``rsfm data sensors|synthetic|stats``: inspect sensors, build the world, compute stats."""
    parser = argparse.ArgumentParser(prog="rsfm data", description=data_main.__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sensors = sub.add_parser("sensors", help="list registered sensors and their bands")
    sensors.add_argument("name", nargs="?", help="show one sensor's band table")
    synth = sub.add_parser("synthetic", help="generate (or locate) the embedded synthetic world")
    synth.add_argument("--root", type=Path, default=None, help="output directory")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scenes", type=int, default=None, help="number of scenes")
    stats = sub.add_parser("stats", help="compute per-band normalisation statistics")
    stats.add_argument("paths", nargs="+", help="GeoTIFF files or directories")
    stats.add_argument("--sensor", default=None, help="registered sensor (default: file tags)")
    stats.add_argument("--samples", type=int, default=256, help="random windows to sample")
    stats.add_argument("--out", type=Path, required=True, help="output JSON")
    ns = parser.parse_args(argv)

    if ns.action == "sensors":
        from rsfm.sensors import get_sensor, list_sensors

        if ns.name:
            sensor = get_sensor(ns.name)
            print(f"{sensor.name} ({sensor.modality}): {sensor.description}")
            for b in sensor.bands:
                print(
                    f"  {b.name:>6}  {b.center_nm:>14.1f} nm  fwhm {b.fwhm_nm:>7.1f}  {b.gsd_m:g} m"
                )
        else:
            for name in list_sensors():
                sensor = get_sensor(name)
                print(f"{name:<20} {len(sensor):>4} bands  {sensor.description}")
        return 0
    if ns.action == "synthetic":
        from rsfm.data.synthetic.config import SyntheticWorldConfig
        from rsfm.data.synthetic.world import ensure_synthetic_world

        config = SyntheticWorldConfig(seed=ns.seed)
        if ns.scenes is not None:
            config = SyntheticWorldConfig(seed=ns.seed, n_scenes=ns.scenes)
        print(ensure_synthetic_world(ns.root, config))
        return 0
    from rsfm.data.raster import SensorRasterDataset
    from rsfm.data.stats import compute_band_stats

    dataset = SensorRasterDataset(ns.paths, sensor=ns.sensor, skip_empty=True)
    result = compute_band_stats(dataset, n_samples=ns.samples)
    result.save(ns.out)
    print(json.dumps(result.to_dict(), indent=1)[:2000])
    return 0


def shipped_configs() -> list[Path]:
    """The recipes under ``configs/`` of the source tree, when rsfm runs from one."""
    root = Path(__file__).resolve().parents[1] / "configs"
    return sorted(root.glob("*/*.yaml")) if root.is_dir() else []


def _first_comment(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return textwrap.shorten(line.lstrip("# ").strip(), width=64, placeholder=" ...")
    return ""


def recipes_help(command: str) -> str:
    """Short, torch-free help of ``rsfm fit|validate|test|predict``: usage and the recipes.

    LightningCLI's full help (every Trainer, model and data option) imports torch and Lightning
    (seconds); it stays one flag away (``--help-all``, or ``--config C.yaml --help``).
    """
    lines = [
        f"usage: rsfm {command} --config CONFIG.yaml [--section.key VALUE ...]",
        "",
        "Run a LightningCLI subcommand from a YAML recipe (class_path / init_args; unknown keys",
        f"are errors). Every option of one recipe: rsfm {command} --config C.yaml --help; every",
        f"Trainer option: rsfm {command} --help-all; the resolved config: --print_config; resume",
        "a run: --ckpt_path last.",
    ]
    configs = shipped_configs()
    if configs:
        root = configs[0].parents[1]
        width = max(len(str(c.relative_to(root.parent))) for c in configs)
        lines += ["", "recipes:"]
        lines += [
            f"  {str(c.relative_to(root.parent)):<{width}}  {_first_comment(c)}" for c in configs
        ]
    return "\n".join(lines)


DEBUG_ENV = "RSFM_DEBUG"


def _debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` (anywhere) or ``RSFM_DEBUG=1`` asks for tracebacks; argv without it."""
    debug = os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "False")
    if "--debug" in argv:
        debug = True
        argv = [a for a in argv if a != "--debug"]
    return debug, argv


def one_line_error(err: BaseException, command: str) -> str:
    """``rsfm COMMAND: error: ...`` on one line; rsfm's own errors already name file and fix."""
    message = err.args[0] if isinstance(err, KeyError) and err.args else err  # no repr quotes
    text = " ".join(str(message).split()) or type(err).__name__
    if type(err).__module__.split(".")[0] not in ("rsfm", "builtins"):
        text = f"{type(err).__name__}: {text}"
    return f"rsfm {command}: error: {text} (--debug or {DEBUG_ENV}=1 for the traceback)"


def main(argv: list[str] | None = None, one_line_errors: bool | None = None) -> int:
    """Entry point of the ``rsfm`` console script.

    From the shell, every error ends the command with one line on stderr (the file, the
    problem, the fix) and exit code 1; ``--debug`` or ``RSFM_DEBUG=1`` shows the traceback
    instead. Called from Python (``argv`` given) errors propagate unless ``one_line_errors``.
    """
    from_shell = argv is None
    debug, args = _debug_requested(list(sys.argv[1:] if argv is None else argv))
    if from_shell:
        sys.argv[1:] = args
    one_line = from_shell if one_line_errors is None else one_line_errors
    if debug or not one_line:
        return _dispatch(args, from_shell)
    try:
        return _dispatch(args, from_shell)
    except KeyboardInterrupt:
        print("rsfm: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one-line contract of the command line
        print(one_line_error(err, args[0] if args else ""), file=sys.stderr)
        return 1


def _dispatch(args: list[str], from_shell: bool) -> int:
    argv = list(args)
    if not argv or argv[0] in {"-h", "--help"}:
        print(
            "usage: rsfm {fit,validate,test,predict} --config CONFIG.yaml [options]\n"
            "       rsfm data {sensors,synthetic,stats} ...\n"
            "       rsfm hub {list,show,push,pull,verify} ...\n"
            "       rsfm tile MODEL INPUT.tif OUTPUT.tif [options]\n"
            "       rsfm generate PROMPT --gsd M --out DIR [options]\n"
            "       rsfm super-resolve LR.tif --ref REF.tif --out SR.tif [options]\n"
            "       rsfm assess IMAGE.tif --segmenter NAME --model SQA_NAME [options]\n"
            "       rsfm evaluate --encoder NAME@VERSION --dataset NAME ... [options]\n\n"
            "Train and apply remote-sensing foundation models. `rsfm fit --help` lists the\n"
            "recipes; `rsfm fit --config C.yaml --help` every option of one, `--print_config`\n"
            "the resolved config."
        )
        return 0
    if argv[0] in LIGHTNING_COMMANDS:
        if argv[1:] in (["--help"], ["-h"]):
            print(recipes_help(argv[0]))
            return 0
        if argv[1:] == ["--help-all"]:
            argv = [argv[0], "--help"]
            if from_shell:
                sys.argv[1:] = argv
        lightning_main(None if from_shell else argv)  # None: LightningCLI reads sys.argv itself
        return 0
    if argv[0] in COMMANDS:
        module_name, function_name = COMMANDS[argv[0]].split(":")
        return getattr(importlib.import_module(module_name), function_name)(argv[1:])
    print(f"rsfm: unknown command {argv[0]!r}; try `rsfm --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

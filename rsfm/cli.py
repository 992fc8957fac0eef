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
import os
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


class ConfigError(ValueError):
    """A ``fit|validate|test|predict`` config the parser refuses (one line: key, suggestion)."""


# Spellings of a key that difflib cannot match (``learning_rate`` and ``lr`` share 2 letters).
KEY_ALIASES = {
    "learning_rate": "lr",
    "epochs": "max_epochs",
    "steps": "max_steps",
    "gpus": "devices",
    "workers": "num_workers",
    "batchsize": "batch_size",
    "bs": "batch_size",
}


def did_you_mean(key: str, valid: list[str] | set[str]) -> list[str]:
    """Close spellings of ``key`` among ``valid`` (alias, initials like ``lr``, then difflib)."""
    import difflib

    valid = sorted(set(valid))
    found = [KEY_ALIASES[key]] if KEY_ALIASES.get(key) in valid else []
    initials = "".join(word[0] for word in key.split("_") if word)
    if "_" in key and initials in valid:
        found.append(initials)
    found += difflib.get_close_matches(key, valid, n=2, cutoff=0.6)
    return list(dict.fromkeys(found))[:2]


def _class_options(class_path: str) -> list[str]:
    """The init arguments jsonargparse accepts for ``class_path`` (empty when unimportable)."""
    from jsonargparse import ArgumentParser

    module_name, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
        parser = ArgumentParser(exit_on_error=False)
        parser.add_class_arguments(cls, "x", fail_untyped=False)
    except Exception:  # noqa: BLE001 - a suggestion is best effort
        return []
    return sorted({a.dest.split(".")[1] for a in parser._actions if a.dest.startswith("x.")})


def _parser_keys(parser: Any) -> list[str]:
    """Every dotted key a (subcommand) parser accepts: ``trainer.max_epochs``, ``model``, ..."""
    return [a.dest for a in getattr(parser, "_actions", []) if a.dest not in ("help", "config")]


def _where(key: str, given: list[str], from_command_line: bool) -> str:
    """``on the command line`` or ``in A.yaml`` (the config files given)."""
    flags = [a.split("=")[0] for a in given if a.startswith("--")]
    if from_command_line or f"--{key}" in flags:
        return "on the command line"
    configs = [b for a, b in zip(given, given[1:], strict=False) if a in ("-c", "--config")]
    configs += [a.split("=", 1)[1] for a in given if a.startswith("--config=")]
    return f"in {', '.join(configs)}" if configs else "in the config"


def _suggestion(key: str, valid: list[str]) -> str:
    close = did_you_mean(key, valid)
    if close:
        return "did you mean " + " or ".join(f"`{c}`" for c in close) + "?"
    return f"valid keys: {', '.join(valid)}" if valid else ""


def describe_config_error(message: str, parser: Any, given: list[str]) -> str:
    """One line for a jsonargparse error: the offending key and a "did you mean" first.

    Args:
        message: The ``ArgumentError`` text (multi-line, nested for class_path values).
        parser: The subcommand's parser (its keys are the valid top-level / trainer keys).
        given: The command-line arguments (to say whether the key came from a file or flags).
    """
    import re

    command = next((a for a in given if a in LIGHTNING_COMMANDS), "fit")
    help_hint = f"every option: rsfm {command} --config C.yaml --help"
    unknown = re.search(r"does not accept option '([^']+)'", message) or re.search(
        r"unrecognized arguments: --?([^\s=]+)", message
    )
    if unknown:  # a top-level, trainer or other plain key (YAML: 'does not accept'; CLI flags)
        key = unknown.group(1)
        parts, keys = key.split("."), _parser_keys(parser)
        depth = 0  # the first component no accepted key has at this position
        while depth < len(parts) and any(
            k.split(".")[: depth + 1] == parts[: depth + 1] for k in keys
        ):
            depth += 1
        depth = min(depth, len(parts) - 1)
        level = sorted(
            {
                k.split(".")[depth]
                for k in keys
                if k.count(".") >= depth and k.split(".")[:depth] == parts[:depth]
            }
        )
        shown = ".".join(parts[: depth + 1])
        shown = f"`{shown}`" + (f" (in `{key}`)" if shown != key else "")
        where = _where(key, given, from_command_line="unrecognized arguments" in message)
        return f"unknown key {shown} {where}: {_suggestion(parts[depth], level)} ({help_hint})"
    lines = [line for line in message.splitlines() if line.strip()]
    leaf = _deepest_error(lines)
    if leaf is None:
        return f"{' '.join(message.split())} ({help_hint})"
    key, class_path, value = _error_key(lines, leaf)
    text = lines[leaf].strip().removeprefix("- ")
    if key == "?":  # not nested under a key: e.g. no --config at all
        if "arguments are required" in text:
            help_hint = f"give --config C.yaml; `rsfm {command} --help` lists the recipes"
        return f"{text} ({help_hint})"
    where = _where(key, given, from_command_line=any("NestedArg" in line for line in lines))
    option = re.fullmatch(r"Option '([^']+)' is not accepted", text)
    if option and class_path:  # an init argument of a class_path value (model, data, ...)
        valid = _class_options(class_path)
        return (
            f"unknown key `{key}.{option.group(1)}` {where}: {_suggestion(option.group(1), valid)}"
            f" ({class_path} takes: {', '.join(valid) or '?'}; {help_hint})"
        )
    missing = re.fullmatch(r"module '([^']+)' has no attribute '([^']+)'", text)
    if missing and class_path:  # a misspelled class name
        module = sys.modules.get(missing.group(1))
        names = [n for n in dir(module) if n[:1].isupper()] if module is not None else []
        return (
            f"unknown class `{class_path}` at `{key.removesuffix('.init_args')}.class_path`"
            f" {where}: "
            f"{_suggestion(missing.group(2), names)} ({help_hint})"
        )
    got = f", got {value}" if value is not None else ""
    return f"`{key}` {where}: {text}{got} ({help_hint})"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _deepest_error(lines: list[str]) -> int | None:
    """Index of the most nested error line of a jsonargparse message (not ``NoneType``)."""
    skip = ("Parser key", "Does not validate", "Subtypes:", "Errors:", "Given value")
    best = None
    for i, line in enumerate(lines):
        text = line.strip().removeprefix("- ")
        if text.startswith(skip) or "<class 'NoneType'>" in text or text.endswith(":"):
            continue
        if best is None or _indent(line) > _indent(lines[best]):
            best = i
    return best


def _error_key(lines: list[str], leaf: int) -> tuple[str, str | None, str | None]:
    """Dotted key of the error at ``lines[leaf]``, its innermost class_path and given value.

    The message nests ``Parser key "K":`` and ``- Problem with given class_path 'C':`` blocks
    by indentation; a class given as ``{class_path, init_args}`` adds ``init_args``, a list of
    them ``[Name]``, a dataclass nothing.
    """
    import re

    chain, depth = [], _indent(lines[leaf])
    for i in range(leaf - 1, -1, -1):
        if _indent(lines[i]) < depth and re.match(
            r'\s*(Parser key "|- Problem with given)', lines[i]
        ):
            chain.append(i)
            depth = _indent(lines[i])
    parts: list[str] = []
    class_path = value = value_type = None
    for i in reversed(chain):
        found = re.match(r'\s*Parser key "([^"]+)"', lines[i])
        if found:
            parts.append(found.group(1))
            own = [
                line.strip()
                for line in lines[i + 1 :]
                if _indent(line) == _indent(lines[i]) + 2 and line.strip().startswith("Given")
            ]
            value_type = next((g for g in own if g.startswith("Given value type:")), "")
            value = next(
                (g.split(":", 1)[1].strip() for g in own if g.startswith("Given value:")), None
            )
            continue
        class_path = re.search(r"class_path '([^']+)'", lines[i]).group(1)
        if "'list'" in value_type:
            parts[-1] += f"[{class_path.rpartition('.')[2]}]"
        if value is not None and ("class_path" in value or value.startswith("NestedArg")):
            parts.append("init_args")
    return ".".join(parts) or "?", class_path, value


RUNS = "runs"


def default_run_root(configs: Any) -> Path:
    """``runs/<stem of the last --config>`` (``runs/rsfm`` without one): where a run goes when
    its config names no ``trainer.default_root_dir``."""
    given = [str(c) for c in configs or [] if c is not None]
    return Path(RUNS) / (Path(given[-1]).stem if given else "rsfm")


def remove_empty_log_dirs(trainer: Any) -> None:
    """Delete each logger's ``version_N`` folder (and its empty parent) holding no file."""
    import shutil

    for logger in getattr(trainer, "loggers", []) or []:
        folder = getattr(logger, "log_dir", None)
        if not folder or not Path(folder).is_dir():
            continue
        folder = Path(folder)
        if not any(p.is_file() for p in folder.rglob("*")):
            shutil.rmtree(folder, ignore_errors=True)
            if folder.parent.is_dir() and not any(folder.parent.iterdir()):
                folder.parent.rmdir()


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
        """LightningCLI with one run layout for every family, ending ``fit`` with a summary.

        The layout (:mod:`rsfm.tasks.checkpoint_io`): ``<run root>/config.yaml`` (resolved
        config), ``<run root>/checkpoints/`` (and ``checkpoints/steps/``), loggers beside them;
        the run root is ``trainer.default_root_dir`` (``runs/<config name>`` when unset).

        A config the parser refuses raises :class:`ConfigError`, whose one-line message starts
        with the offending key and a "did you mean" (no usage dump; see :func:`main`).
        """

        def parse_arguments(self, parser: Any, args: Any) -> None:
            """Parse; a refused config raises :class:`ConfigError` (key and suggestion first)."""
            from argparse import ArgumentError

            try:
                super().parse_arguments(parser, args)
            except ArgumentError as err:
                given = list(sys.argv[1:] if args is None else args)
                command = next((a for a in given if a in LIGHTNING_COMMANDS), None)
                subparser = getattr(self, "_subcommand_parsers", {}).get(command, parser)
                raise ConfigError(describe_config_error(str(err), subparser, given)) from err

        def before_instantiate_classes(self) -> None:
            """A run without ``trainer.default_root_dir`` gets ``runs/<config name>``."""
            config = self.config.get(str(self.subcommand), self.config)
            trainer = config.get("trainer")
            if trainer is not None and trainer.get("default_root_dir") is None:
                trainer["default_root_dir"] = str(default_run_root(config.get("config")))

        def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
            """The trainer, its checkpoints placed in the run layout (``<root>/checkpoints``)."""
            from rsfm.tasks.checkpoint_io import place_checkpoints

            trainer = super().instantiate_trainer(**kwargs)
            place_checkpoints(trainer)
            return trainer

        def _run_subcommand(self, subcommand: str) -> None:
            """Run; a run that fails leaves no empty logger folder behind (Lightning creates
            ``<logger>/version_N`` before the datamodule can refuse its input)."""
            try:
                super()._run_subcommand(subcommand)
            except BaseException:
                remove_empty_log_dirs(self.trainer)
                raise

        def after_fit(self) -> None:
            """Print checkpoints, final metrics, config, logs and the push command."""
            from rsfm.tasks.run_summary import run_summary

            summary = run_summary(self.trainer)
            if self.trainer.is_global_zero:
                print(summary, flush=True)

    from rsfm.tasks.run_summary import RunConfigCallback

    return RsfmCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigCallback,  # <run root>/config.yaml, not <log dir>/
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"exit_on_error": False},  # errors raise: RsfmCLI.parse_arguments
        args=args,
        run=run,
        auto_configure_optimizers=False,
    )


def data_main(argv: list[str]) -> int:
    """``rsfm data sensors|synthetic|stats``: inspect sensors, build the world, compute stats."""
    if argv[:1] == ["chip"]:  # its own argparse: rsfm.data.shards.chip_main
        return importlib.import_module("rsfm.data.shards").chip_main(argv[1:])
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
    stats.add_argument(
        "--samples", type=int, default=256, help="most windows read (a small raster: all of it)"
    )
    stats.add_argument(
        "--nonfinite",
        choices=("error", "mask"),
        default="error",
        help="NaN/inf pixels that are not nodata: refuse the file (default) or leave them out",
    )
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
    return _data_stats(ns)


def _data_stats(ns: argparse.Namespace) -> int:
    """``rsfm data stats``: the errors a user meets speak of its flags, not Python keywords."""
    from rsfm.data.errors import BandMismatchError, NonFiniteError
    from rsfm.data.grid import find_rasters
    from rsfm.data.raster import SensorRasterDataset
    from rsfm.data.stats import compute_band_stats
    from rsfm.inference.engine import check_output_path

    out = Path(ns.out)
    for path in find_rasters(ns.paths):  # before anything is read: never overwrite an input
        check_output_path(path, out)
    try:
        dataset = SensorRasterDataset(
            ns.paths, sensor=ns.sensor, skip_empty=True, nonfinite=ns.nonfinite
        )
    except BandMismatchError as err:
        if ns.sensor is not None or not isinstance(err.__cause__, ValueError):
            raise
        reason = str(err.__cause__).removeprefix(f"{err.path}: ").split("; pass ")[0]
        raise BandMismatchError(
            err.path,
            f"no --sensor given and {reason}; give --sensor NAME (`rsfm data sensors` lists "
            "them) or tag every band with its wavelength",
        ) from err
    try:
        result = compute_band_stats(dataset, n_samples=ns.samples, whole=True)
    except NonFiniteError as err:
        raise NonFiniteError(
            err.path,
            f"{err.problem.split('; nonfinite=')[0]}; --nonfinite mask leaves them out of the "
            "statistics (or declare them the file's nodata)",
        ) from err
    result.save(out)
    for name, low, high, mean, std in zip(
        result.band_names, result.low, result.high, result.mean, result.std, strict=True
    ):
        print(f"{name:>8s}  clip {low:.6g}..{high:.6g}  mean {mean:.6g}  std {std:.6g}")
    print(f"rsfm data stats: {result.n_pixels} valid pixels of {result.sensor}; wrote {out}")
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
    if type(err).__module__.split(".")[0] not in ("rsfm", "builtins", "__main__"):  # -m rsfm.cli
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
        return _dispatch(args, from_shell, debug)
    try:
        return _dispatch(args, from_shell, debug)
    except KeyboardInterrupt:
        print("rsfm: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one-line contract of the command line
        print(one_line_error(err, args[0] if args else ""), file=sys.stderr)
        return 1


def _dispatch(args: list[str], from_shell: bool, debug: bool = False) -> int:
    argv = list(args)
    if not argv or argv[0] in {"-h", "--help"}:
        print(
            "usage: rsfm {fit,validate,test,predict} --config CONFIG.yaml [options]\n"
            "       rsfm data {sensors,synthetic,stats,chip} ...\n"
            "       rsfm hub {list,show,push,pull,verify} ...\n"
            "       rsfm tile MODEL INPUT.tif OUTPUT.tif [options]\n"
            "       rsfm generate PROMPT --gsd M --out DIR [options]\n"
            "       rsfm super-resolve LR.tif --ref REF.tif --model NAME --out SR.tif [options]\n"
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
        try:
            lightning_main(None if from_shell else argv)  # None: LightningCLI reads sys.argv
        except ConfigError as err:  # a usage error: one line first, exit 2 (as argparse)
            if debug:
                raise
            print(one_line_error(err, argv[0]), file=sys.stderr)
            raise SystemExit(2) from None
        return 0
    if argv[0] in COMMANDS:
        module_name, function_name = COMMANDS[argv[0]].split(":")
        return getattr(importlib.import_module(module_name), function_name)(argv[1:])
    print(f"rsfm: unknown command {argv[0]!r}; try `rsfm --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""Bad inputs to every command: one line naming the file and the problem, no traceback, nothing
left at OUT (issue 13, "tests that would have caught it").

Each case runs ``rsfm.cli.main(argv, one_line_errors=True)`` -- the console contract -- and
asserts: the exit code (1 for an error, 2 for a usage error or a ``--strict`` refusal); exactly
one line on stderr besides progress bars, ``rsfm CMD: warning:`` lines and Lightning's start-up
chatter, naming the offending file (or model, or entry) and the problem; no "Traceback"; and
nothing new on disk (no output, no ``.partial.*``, no ``.tmp``, no folder; an input named as
the output is unchanged). Valid but unusual inputs (uint8 / int16 / float32, EPSG:4326, a polar
CRS, 1x1 and smaller-than-a-tile rasters) must succeed with an output on the input's grid (CRS
and transform as the input's). One run of the real console script shows that no traceback
reaches the shell. Models are tiny and untrained, pushed once into a module hub.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine
from rasters import smooth, unit_stats, write_geotiff

from rsfm.cli import main

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["water", "forest", "crop", "urban"]
RGB_NM = (660.0, 560.0, 490.0)

# stderr lines that are not the error: progress bars, rsfm's warnings, Lightning's start-up.
NOISE = re.compile(
    r"^(rsfm [\w -]+: warning: |.*\d%\|.*\||Seed set to |GPU available: |TPU available: "
    r"|HPU available: |💡 Tip: )"
)


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hub with tiny untrained models: a 4-class segmenter (and a tampered copy), an SQA
    model, a CRefDiff super-resolver (RGB statistics) and a Text2Earth generator."""
    from rsfm.band_stats import BandStats
    from rsfm.hub import push
    from rsfm.models.registry import create_model
    from rsfm.models.text2earth import TINY_UNET
    from rsfm.tasks.refsr import RefSRTask

    root = tmp_path_factory.mktemp("matrix_hub")
    torch.manual_seed(0)
    segmenter = create_model("smarties_tiny_seg_linear", num_outputs=len(CLASSES))
    card = {
        "task": "segmentation",
        "class_names": CLASSES,
        "normalization": {"sentinel2_l1c": unit_stats("sentinel2_l1c")},
    }
    push(segmenter, "seg", "1.0", root, card=card)
    push(segmenter, "seg-bad", "1.0", root, card=card)
    weights = root / "seg-bad@1.0" / "model.safetensors"
    tampered = bytearray(weights.read_bytes())
    tampered[-10] ^= 0xFF  # one byte of the weights changed after the push
    weights.write_bytes(bytes(tampered))
    push(create_model("sqa_tiny"), "sqa", "1.0", root, card={"input_size": 32})
    rgb = BandStats(
        band_names=["R", "G", "B"], wavelengths=list(RGB_NM), low=[0.0] * 3, high=[2000.0] * 3,
        mean=[1000.0] * 3, std=[300.0] * 3,
    ).to_dict()  # fmt: skip
    task = RefSRTask(model="crefdiff_tiny")
    task.band_stats = {"lr": rgb, "reference": rgb}
    push(task, "sr", "1.0", root)
    unet = {**TINY_UNET, "block_out_channels": [16, 32]}
    push(create_model("text2earth_tiny", unet=unet, image_size=16), "t2e", "1.0", root)
    return root


def _cut(path: Path, keep: float = 0.5) -> Path:
    with path.open("r+b") as handle:
        handle.truncate(int(path.stat().st_size * keep))
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every input of the matrix by name (read-only for the cases)."""
    d = tmp_path_factory.mktemp("matrix_inputs")
    rng = np.random.default_rng(0)

    def s2(name: str, data: np.ndarray | None = None, **kwargs) -> Path:
        data = rng.random((13, 64, 64), dtype=np.float32) if data is None else data
        return write_geotiff(d / f"{name}.tif", data, **kwargs)

    files = {"s2": s2("s2"), "missing": d / "missing.tif"}
    files["zero"] = d / "zero.tif"
    files["zero"].write_bytes(b"")
    files["text"] = d / "text.tif"
    files["text"].write_text("not a tiff at all\n" * 40)
    files["head"] = d / "head.tif"
    files["head"].write_bytes(files["s2"].read_bytes()[:64])  # header cut
    files["body"] = _cut(s2("body", tiled=True))  # header intact, blocks cut
    files["nocrs"] = s2("nocrs", crs=None)
    files["five"] = write_geotiff(d / "five.tif", rng.random((5, 64, 64), dtype=np.float32))
    files["nodata"] = s2("nodata", np.zeros((13, 64, 64), np.float32), nodata=0)
    nan = rng.random((13, 64, 64), dtype=np.float32)
    nan[:, ::8, ::8] = np.nan
    files["nan"] = s2("nan", nan)
    inf = rng.random((13, 64, 64), dtype=np.float32)
    inf[3, 10, 10] = np.inf  # one pixel
    files["inf"] = s2("inf", inf)
    dense_inf = rng.random((13, 64, 64), dtype=np.float32)
    dense_inf[:, 3::8, 5::8] = -np.inf  # in every window training can draw
    files["inf_dense"] = s2("inf_dense", dense_inf)
    files["u8"] = s2("u8", rng.integers(0, 256, (13, 64, 64)).astype(np.uint8))
    files["i16"] = s2("i16", rng.integers(0, 2, (13, 64, 64)).astype(np.int16))
    files["wgs84"] = s2("wgs84", crs="EPSG:4326", res=1e-4, origin=(12.0, 45.0))
    files["polar"] = s2("polar", crs="EPSG:3413", origin=(-200_000.0, -1_000_000.0))
    files["one"] = s2("one", rng.random((13, 1, 1), dtype=np.float32))
    files["small"] = s2("small", rng.random((13, 20, 12), dtype=np.float32))
    # super-resolution: 3-band LR at 40 m, RGB reference at 10 m
    files["lr"] = write_geotiff(d / "lr.tif", smooth(3, 16, 16), res=40)
    files["ref"] = write_geotiff(d / "ref.tif", smooth(3, 64, 64, seed=1), res=10)
    files["lr_body"] = _cut(write_geotiff(d / "lr_body.tif", smooth(3, 64, 64), tiled=True))
    files["lr_nocrs"] = write_geotiff(d / "lr_nocrs.tif", smooth(3, 16, 16), res=40, crs=None)
    files["lr_two"] = write_geotiff(d / "lr_two.tif", smooth(2, 16, 16), res=40)
    lr_nan = smooth(3, 16, 16)
    lr_nan[0, 3, 3] = np.nan
    files["lr_nan"] = write_geotiff(d / "lr_nan.tif", lr_nan, res=40)
    empty = np.zeros((3, 16, 16), np.float32)
    files["lr_nodata"] = write_geotiff(d / "lr_nodata.tif", empty, res=40, nodata=0)
    polar = {"crs": "EPSG:3413", "origin": (-200_000.0, -1_000_000.0)}
    files["lr_polar"] = write_geotiff(d / "lr_polar.tif", smooth(3, 16, 16), res=40, **polar)
    files["ref_polar"] = write_geotiff(d / "ref_polar.tif", smooth(3, 64, 64), res=10, **polar)
    files["lr_one"] = write_geotiff(d / "lr_one.tif", smooth(3, 1, 1), res=40)
    # generation: the tiny Text2Earth takes 4 bands
    files["g_five"] = files["five"]
    files["g_polar"] = write_geotiff(d / "g_polar.tif", smooth(4, 16, 16), **polar)
    files["g_one"] = write_geotiff(d / "g_one.tif", smooth(4, 1, 1))
    # checkpoints for `rsfm hub push`
    files["zero_ckpt"] = d / "zero.ckpt"
    files["zero_ckpt"].write_bytes(b"")
    files["text_ckpt"] = d / "text.ckpt"
    files["text_ckpt"].write_text("not a checkpoint\n" * 10)
    files["cut_ckpt"] = d / "cut.ckpt"
    torch.save({"state_dict": {"model.w": torch.zeros(64, 64)}}, files["cut_ckpt"])
    _cut(files["cut_ckpt"])
    return files


def _make_read_only(folder: Path, stack: ExitStack) -> None:
    """``folder`` refuses new entries, also for root (immutable attribute), else skip."""
    folder.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode
        if done == 0:
            stack.callback(subprocess.run, ["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        stack.callback(folder.chmod, 0o755)
    if os.access(folder, os.W_OK):
        pytest.skip("cannot make a read-only folder here")


# ----------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One command line and what it must do.

    ``argv`` and ``says`` are templates: ``{NAME}`` is an input of :func:`inputs`, ``{hub}``
    the module hub, ``{tmp}`` the case's folder, ``{out}`` ``{tmp}/out.tif``, ``{same}`` a copy
    of input ``same`` inside ``{tmp}``, ``{ro}`` a read-only folder. Every ``says`` item (``a|b``:
    either) must be in the error line. ``prep``: ``same=NAME``, ``ro``, ``locked``, ``dir``,
    ``file``, ``fit=NAME`` (a tiny MAE config at ``{tmp}/fit.yaml`` training on a copy of
    input NAME in ``{tmp}/data``, which ``{NAME}`` then names).
    ``check``: for code 0, what to verify of the output.
    """

    id: str
    argv: str
    code: int
    says: tuple[str, ...] = ()
    prep: tuple[str, ...] = ()
    check: str | None = None
    xfail: str | None = None
    files_only: bool = False  # new empty folders are not counted as left at OUT


TILE = "tile seg {src} {out} --hub {hub}"
STATS = "data stats {src} --sensor sentinel2_l1c --out {out}"
FIT = "fit --config {tmp}/fit.yaml --trainer.default_root_dir {tmp}/run"
GEN = "generate river --model t2e --hub {hub} --steps 1 --out {tmp}/gen"
SR = "super-resolve {lr} --ref {ref} --model sr --hub {hub} --scale 4 --steps 1 --no-progress"
SR_OUT = SR + " --tile-size 32 --out {out}"
ASSESS = "assess {src} --model sqa --segmenter seg --hub {hub} --sensor sentinel2_l1c"
UNREADABLE = "not a readable raster|cannot open as a raster"
TRUNCATED = "truncated|cannot decode|corrupt"
NONFINITE = "NaN/inf"
NOT_A_DIR = "is a directory"
NO_WRITE = "no write access|not permitted|read-only"


def _c(case_id: str, template: str, code: int, *says: str, **kwargs) -> Case:
    return Case(case_id, template, code, says, **kwargs)


def _tile(case_id: str, src: str, code: int, *says: str, **kwargs) -> Case:
    return _c(case_id, TILE.replace("{src}", f"{{{src}}}"), code, *says, **kwargs)


def _stats(case_id: str, src: str, code: int, *says: str, **kwargs) -> Case:
    return _c(case_id, STATS.replace("{src}", f"{{{src}}}"), code, *says, **kwargs)


def _fit(case_id: str, src: str, code: int, *says: str, **kwargs) -> Case:
    kwargs.setdefault("files_only", True)
    return _c(case_id, FIT, code, *says, prep=(f"fit={src}",), **kwargs)


def _sr(case_id: str, lr: str, ref: str, code: int, *says: str, out: str = "", **kw) -> Case:
    template = (SR + f" --out {out}" if out else SR_OUT).replace("{lr}", f"{{{lr}}}")
    return _c(case_id, template.replace("{ref}", f"{{{ref}}}"), code, *says, **kw)


def _assess(case_id: str, src: str, code: int, *says: str, extra: str = "", **kwargs) -> Case:
    template = ASSESS.replace("{src}", f"{{{src}}}") + (f" {extra}" if extra else "")
    return _c(case_id, template, code, *says, **kwargs)


# fmt: off
CASES = [
    # --------------------------------------------------------------- rsfm tile
    _tile("tile-zero-byte", "zero", 1, "{zero}", "empty (0 bytes)"),
    _tile("tile-not-a-tiff", "text", 1, "{text}", UNREADABLE),
    _tile("tile-truncated-header", "head", 1, "{head}", UNREADABLE),
    _tile("tile-truncated-body", "body", 1, "{body}", TRUNCATED),
    _tile("tile-missing-file", "missing", 1, "{missing}", "no such file"),
    _tile("tile-no-crs", "nocrs", 1, "{nocrs}", "no CRS"),
    _tile("tile-wrong-band-count", "five", 1, "{five}", "5 bands", "--sensor"),
    _tile("tile-all-nodata", "nodata", 1, "{nodata}", "every pixel is nodata"),
    _tile("tile-nan", "nan", 1, "{nan}", NONFINITE),
    _tile("tile-inf", "inf", 1, "{inf}", NONFINITE),
    _tile("tile-uint8-warns", "u8", 0, "{u8}", "far from the model's", check="tile"),
    _c("tile-uint8-strict", TILE.replace("{src}", "{u8}") + " --strict", 2,
       "refused (--strict)", "{u8}", "far from the model's training statistics"),
    _tile("tile-int16", "i16", 0, check="tile"),
    _tile("tile-float32", "s2", 0, check="tile"),
    _tile("tile-epsg4326", "wgs84", 0, check="tile"),
    _tile("tile-polar-epsg3413", "polar", 0, check="tile"),
    _tile("tile-1x1", "one", 0, check="tile"),
    _tile("tile-smaller-than-a-tile", "small", 0, check="tile"),
    _c("tile-out-is-in", "tile seg {same} {same} --hub {hub}", 1, "{same}", "is the input raster",
       prep=("same=s2",)),
    _c("tile-out-is-a-directory", "tile seg {s2} {tmp}/outdir --hub {hub}", 1, "{tmp}/outdir",
       NOT_A_DIR, prep=("dir",)),
    _c("tile-out-read-only", "tile seg {s2} {ro}/out.tif --hub {hub}", 1, "{ro}/out.tif",
       NO_WRITE, prep=("ro",)),
    _c("tile-out-parent-is-a-file", "tile seg {s2} {tmp}/afile/out.tif --hub {hub}", 1,
       "{tmp}/afile/out.tif", "not a folder", prep=("file",)),
    _tile("tile-out-locked", "s2", 1, "{out}", "another rsfm tile run", prep=("locked",)),
    _c("tile-unknown-model", "tile nope {s2} {out} --hub {hub}", 1, "'nope'", "no model named"),
    _c("tile-a-super-resolution-model", "tile sr {s2} {out} --hub {hub}", 2, "sr ",
       "rsfm super-resolve"),
    _c("tile-size-off-the-patch-grid", TILE.replace("{src}", "{s2}") + " --tile-size 33", 2,
       "--tile-size", "patch size 16"),
    _c("tile-tampered-entry", "tile seg-bad {s2} {out} --hub {hub}", 1, "seg-bad@1.0",
       "model.safetensors", "sha256 mismatch"),
    # --------------------------------------------------------------- rsfm data stats
    _stats("stats-zero-byte", "zero", 1, "{zero}", "empty (0 bytes)"),
    _stats("stats-not-a-tiff", "text", 1, "{text}", UNREADABLE),
    _stats("stats-truncated-header", "head", 1, "{head}", UNREADABLE),
    _stats("stats-truncated-body", "body", 1, "{body}", TRUNCATED),
    _stats("stats-missing-file", "missing", 1, "{missing}", "no such file"),
    _stats("stats-no-crs", "nocrs", 1, "{nocrs}", "no CRS"),
    _stats("stats-wrong-band-count", "five", 1, "{five}", "5 bands", "declares 13"),
    _stats("stats-all-nodata", "nodata", 1, "{nodata}", "no valid pixel"),
    _stats("stats-nan", "nan", 1, "{nan}", NONFINITE),
    _stats("stats-inf-one-pixel", "inf", 1, "{inf}", NONFINITE),
    _stats("stats-uint8", "u8", 0, check="stats"),
    _stats("stats-polar-epsg3413", "polar", 0, check="stats"),
    _stats("stats-1x1", "one", 1, "{one}", "1 valid pixel|too few"),
    _c("stats-unknown-sensor", "data stats {s2} --sensor nope --out {out}", 1, "'nope'",
       "unknown sensor"),
    _c("stats-out-is-in", "data stats {same} --sensor sentinel2_l1c --out {same}", 1, "{same}",
       "input", prep=("same=s2",)),
    _c("stats-out-is-a-directory", "data stats {s2} --sensor sentinel2_l1c --out {tmp}/outdir",
       1, "{tmp}/outdir", NOT_A_DIR, prep=("dir",)),
    _c("stats-out-read-only", "data stats {s2} --sensor sentinel2_l1c --out {ro}/s.json", 1,
       "{ro}/s.json", NO_WRITE, prep=("ro",)),
    # --------------------------------------------------------------- rsfm fit
    _fit("fit-zero-byte", "zero", 1, "{zero}", "empty (0 bytes)"),
    _fit("fit-not-a-tiff", "text", 1, "{text}", UNREADABLE),
    _fit("fit-truncated-header", "head", 1, "{head}", UNREADABLE),
    _fit("fit-truncated-body", "body", 1, "{body}", TRUNCATED),
    _fit("fit-missing-file", "missing", 1, "{missing}", "no such file"),
    _fit("fit-no-crs", "nocrs", 1, "{nocrs}", "no CRS"),
    _fit("fit-wrong-band-count", "five", 1, "{five}", "5 bands", "declares 13"),
    _fit("fit-all-nodata", "nodata", 1, "{nodata}", "every pixel is nodata"),
    _fit("fit-nan", "nan", 1, "{nan}", NONFINITE),
    _fit("fit-inf", "inf_dense", 1, "{inf_dense}", NONFINITE),
    _fit("fit-1x1", "one", 1, "{one}", "16 px", "1x1 px"),
    _fit("fit-smaller-than-a-patch", "small", 1, "{small}", "16 px"),
    _fit("fit-polar-epsg3413", "polar", 0, check="fit"),
    _fit("fit-failed-run-leaves-no-version-folder", "nodata", 1, "{nodata}",
         "every pixel is nodata", files_only=False),
    # --------------------------------------------------------------- rsfm hub
    _c("hub-verify-tampered-entry", "hub verify seg-bad --hub {hub}", 1, "seg-bad@1.0",
       "model.safetensors", "sha256 mismatch"),
    _c("hub-show-unknown-model", "hub show nope --hub {hub}", 1, "'nope'", "no model named"),
    _c("hub-verify-unknown-version", "hub verify seg@9.9 --hub {hub}", 1, "seg@9.9",
       "not in the index"),
    _c("hub-pull-tampered-entry", "hub pull seg-bad --from {hub} --hub {tmp}/dest", 1,
       "seg-bad@1.0", "sha256 mismatch"),
    _c("hub-pull-unknown-model", "hub pull nope --from {hub} --hub {tmp}/dest", 1, "'nope'",
       "no model named"),
    _c("hub-pull-into-read-only-hub", "hub pull seg --from {hub} --hub {ro}/hub", 1, "{ro}",
       NO_WRITE, prep=("ro",)),
    _c("hub-push-zero-byte", "hub push {zero_ckpt} --name x --hub {tmp}/dest", 1,
       "{zero_ckpt}", "empty (0 bytes)"),
    _c("hub-push-not-a-checkpoint", "hub push {text_ckpt} --name x --hub {tmp}/dest", 1,
       "{text_ckpt}", "not a PyTorch checkpoint"),
    _c("hub-push-truncated", "hub push {cut_ckpt} --name x --hub {tmp}/dest", 1, "{cut_ckpt}",
       TRUNCATED),
    _c("hub-push-missing", "hub push {tmp}/none.ckpt --name x --hub {tmp}/dest", 1,
       "{tmp}/none.ckpt", "no checkpoint file"),
    # --------------------------------------------------------------- rsfm generate
    _c("generate-unknown-model", GEN.replace("t2e", "nope"), 1, "'nope'", "no model named"),
    _c("generate-not-a-generator", GEN.replace("t2e", "seg"), 1, "seg ", "not a generative"),
    _c("generate-out-is-a-file", "generate river --model t2e --hub {hub} --out {tmp}/afile", 1,
       "{tmp}/afile", "not a folder|not a directory", prep=("file",)),
    _c("generate-out-read-only", "generate river --model t2e --hub {hub} --out {ro}/gen", 1,
       "{ro}/gen", NO_WRITE, prep=("ro",)),
    _c("generate-image-zero-byte", GEN + " --image {zero}", 1, "{zero}", "empty (0 bytes)"),
    _c("generate-image-not-a-tiff", GEN + " --image {text}", 1, "{text}", UNREADABLE),
    _c("generate-image-wrong-band-count", GEN + " --image {g_five}", 1, "{g_five}", "5 bands"),
    _c("generate-image-polar-epsg3413", GEN + " --image {g_polar}", 0, check="generate"),
    _c("generate-image-1x1", GEN + " --image {g_one}", 0, check="generate"),
    # --------------------------------------------------------------- rsfm super-resolve
    _sr("sr-lr-zero-byte", "zero", "ref", 1, "{zero}", "empty (0 bytes)"),
    _sr("sr-ref-not-a-tiff", "lr", "text", 1, "{text}", UNREADABLE),
    _sr("sr-lr-truncated-header", "head", "ref", 1, "{head}", UNREADABLE),
    _sr("sr-lr-truncated-body", "lr_body", "ref", 1, "{lr_body}", TRUNCATED),
    _sr("sr-lr-no-crs", "lr_nocrs", "ref", 1, "{lr_nocrs}", "no CRS"),
    _sr("sr-lr-wrong-band-count", "lr_two", "ref", 1, "{lr_two}", "2 band(s)"),
    _sr("sr-lr-nan", "lr_nan", "ref", 1, "{lr_nan}", NONFINITE),
    _sr("sr-lr-all-nodata", "lr_nodata", "ref", 1, "{lr_nodata}", "every pixel is nodata"),
    _sr("sr-polar-epsg3413", "lr_polar", "ref_polar", 0, check="sr"),
    _sr("sr-lr-1x1", "lr_one", "ref", 0, check="sr"),
    _sr("sr-out-is-lr", "same", "ref", 1, "{same}", "is the input raster", out="{same}",
        prep=("same=lr",)),
    _sr("sr-out-is-ref", "lr", "same", 1, "{same}", "is the reference|is the input raster",
        out="{same}", prep=("same=ref",)),
    _sr("sr-out-is-a-directory", "lr", "ref", 1, "{tmp}/outdir", NOT_A_DIR, out="{tmp}/outdir",
        prep=("dir",)),
    _sr("sr-out-locked", "lr", "ref", 1, "{out}", "another rsfm tile run", prep=("locked",)),
    _c("sr-unknown-model", SR_OUT.replace("--model sr ", "--model nope "), 1, "'nope'",
       "no model named"),
    # --------------------------------------------------------------- rsfm assess
    _assess("assess-zero-byte", "zero", 1, "{zero}", "empty (0 bytes)"),
    _assess("assess-not-a-tiff", "text", 1, "{text}", UNREADABLE),
    _assess("assess-truncated-header", "head", 1, "{head}", UNREADABLE),
    _assess("assess-truncated-body", "body", 1, "{body}", TRUNCATED),
    _assess("assess-wrong-band-count", "five", 1, "{five}", "5 bands"),
    _assess("assess-all-nodata", "nodata", 1, "{nodata}", "no valid pixel"),
    _assess("assess-nan", "nan", 1, "{nan}", NONFINITE),
    _assess("assess-inf-one-pixel", "inf", 1, "{inf}", NONFINITE),
    _assess("assess-1x1", "one", 1, "{one}", "smaller than a 8 px patch"),
    _assess("assess-smaller-than-a-tile", "small", 0, check="assess"),
    _assess("assess-polar-epsg3413", "polar", 0, check="assess"),
    _assess("assess-quality-map-is-a-directory", "s2", 1, "{tmp}/outdir", NOT_A_DIR,
            extra="--quality-map {tmp}/outdir", prep=("dir",)),
    _assess("assess-quality-map-is-in", "same", 1, "{same}", "is the input raster",
            extra="--quality-map {same}", prep=("same=s2",)),
    _assess("assess-quality-map-read-only", "s2", 1, "{ro}/q.tif", NO_WRITE,
            extra="--quality-map {ro}/q.tif", prep=("ro",)),
    _c("assess-unknown-model", ASSESS.replace("sqa", "nope").replace("{src}", "{s2}"), 1,
       "'nope'", "no model named"),
    _c("assess-tampered-segmenter", ASSESS.replace("seg ", "seg-bad ").replace("{src}", "{s2}"),
       1, "seg-bad@1.0", "sha256 mismatch"),
]
# fmt: on


def _params() -> Iterator:
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        yield pytest.param(case, id=case.id, marks=marks)


# ----------------------------------------------------------------------------- helpers
def _snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: relative path -> sha256 of a file, ``dir`` of a folder."""
    found = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        found[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _fit_config(source: Path, target: Path) -> Path:
    config = yaml.safe_load((REPO / "tests" / "conf" / "smarties_tiny.yaml").read_text())
    config["trainer"].update(max_epochs=1, callbacks=config["trainer"]["callbacks"][:1])
    config["data"]["init_args"] = {
        "sources": [{"paths": [str(source)], "sensor": "sentinel2_l1c"}],
        "patch_size": 16, "batch_size": 4, "num_workers": 0, "samples_per_epoch": 8,
        "val_samples": 4, "stats_samples": 8,
    }  # fmt: skip
    target.write_text(yaml.safe_dump(config), encoding="utf-8")
    return target


def _prepare(case: Case, tmp: Path, inputs: dict[str, Path], stack: ExitStack) -> dict:
    names: dict[str, object] = {**inputs, "tmp": tmp, "out": tmp / "out.tif"}
    for step in case.prep:
        kind, _, arg = step.partition("=")
        if kind == "same":
            names["same"] = Path(shutil.copy(inputs[arg], tmp / f"same{inputs[arg].suffix}"))
        elif kind == "ro":
            names["ro"] = tmp / "ro"
            _make_read_only(tmp / "ro", stack)
        elif kind == "locked":
            from filelock import FileLock

            from rsfm.inference.engine import output_lock_path

            stack.enter_context(FileLock(output_lock_path(tmp / "out.tif"), timeout=0))
        elif kind == "dir":
            (tmp / "outdir").mkdir()
        elif kind == "file":
            (tmp / "afile").write_text("a file, not a folder\n")
        elif kind == "fit":  # a copy in a folder of its own: fits write beside their data
            (tmp / "data").mkdir()
            copy = tmp / "data" / inputs[arg].name
            if inputs[arg].exists():
                shutil.copy(inputs[arg], copy)
            names[arg] = copy
            _fit_config(copy, tmp / "fit.yaml")
    return names


def _run(argv: list[str]) -> int:
    """``main`` as the console script runs it (SystemExit is its exit status)."""
    try:
        return main(argv, one_line_errors=True)
    except SystemExit as err:
        if isinstance(err.code, str):  # `raise SystemExit("message")` prints it, exits 1
            print(err.code, file=sys.stderr)
            return 1
        return int(err.code or 0)


def _same_grid(output: Path, source: Path, scale: int = 1) -> None:
    with rasterio.open(output) as out, rasterio.open(source) as src:
        assert out.crs == src.crs, (out.crs, src.crs)
        assert out.transform.almost_equals(src.transform * Affine.scale(1 / scale))
        assert (out.height, out.width) == (src.height * scale, src.width * scale)
        assert np.isfinite(out.read()).all()


def _check_success(case: Case, names: dict, tmp: Path, stdout: str) -> None:
    if case.check in ("tile", "stats"):
        source = Path(str(names[case.argv.split()[2].strip("{}")]))
    if case.check == "tile":
        _same_grid(tmp / "out.tif", source)
        with rasterio.open(tmp / "out.tif") as out:
            assert set(np.unique(out.read(1))) <= set(range(len(CLASSES)))
    elif case.check == "stats":
        import json

        stats = json.loads((tmp / "out.tif").read_text())
        with rasterio.open(source) as src:
            assert 0 < stats["n_pixels"] <= src.width * src.height
            assert len(stats["mean"]) == src.count
    elif case.check == "fit":
        assert list(tmp.rglob("last.ckpt")), "no checkpoint written"
        beside = [p.name for p in (tmp / "data").iterdir()]
        assert len(beside) == 1, beside  # the training raster, nothing written beside it
    elif case.check == "generate":
        image = Path(str(names[case.argv.split("--image {")[1].split("}")[0]]))
        _same_grid(tmp / "gen" / "generated_000.tif", image)
    elif case.check == "sr":
        lr = Path(str(names[case.argv.split()[1].strip("{}")]))
        _same_grid(tmp / "out.tif", lr, scale=4)
    elif case.check == "assess":
        assert "predicted accuracy of seg: " in stdout


# ----------------------------------------------------------------------------- the matrix
def test_the_matrix_has_every_command_and_at_least_forty_cases() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)
    commands = {c.argv.split()[0] for c in CASES}
    assert commands >= {"tile", "fit", "data", "hub", "generate", "super-resolve", "assess"}


@pytest.mark.parametrize("case", _params())
def test_bad_input(
    case: Case,
    hub: Path,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("sys.argv", ["rsfm"])  # LightningCLI warns about pytest's own argv
    monkeypatch.chdir(tmp_path)  # where a fit's CSVLogger (save_dir: .) writes
    inputs_before = _snapshot(next(iter(inputs.values())).parent)
    with ExitStack() as stack:
        names = _prepare(case, tmp_path, inputs, stack)
        names["hub"] = hub
        argv = [part.format_map(names) for part in case.argv.split()]
        before = _snapshot(tmp_path)
        capsys.readouterr()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = _run(argv)
        captured = capsys.readouterr()
        after = _snapshot(tmp_path)
    command = " ".join(argv[:2]) if argv[0] in ("hub",) else argv[0]
    prefix = f"rsfm {command}: "
    lines = [line for line in captured.err.splitlines() if line.strip()]
    rest = [line for line in lines if not NOISE.match(line)]
    assert "Traceback" not in captured.err + captured.out
    assert code == case.code, (code, captured.err[-3000:])
    rsfm_warnings = [  # what rsfm warns about (libraries' deprecations aside)
        str(w.message)
        for w in caught
        if "rsfm" in str(w.filename) and not issubclass(w.category, DeprecationWarning)
    ]
    if code == 0:
        assert rest == [], rest  # no error line
        shown = [line for line in lines if line.startswith(f"{prefix}warning: ")]
        for text in case.says:  # an expected warning names the file and the problem
            wanted = text.format_map(names)
            assert any(wanted in line for line in shown), (wanted, shown)
        if not case.says:
            assert shown == [] and rsfm_warnings == [], (shown, rsfm_warnings)
        _check_success(case, names, tmp_path, captured.out)
        assert _snapshot(next(iter(inputs.values())).parent) == inputs_before  # untouched
        return
    assert len(rest) == 1, rest  # one line; nothing but progress bars and warnings around it
    line = rest[0]
    assert line.startswith(prefix), line
    for text in case.says:
        options = [option.format_map(names) for option in text.split("|")]
        assert any(option in line for option in options), (options, line)
    if case.files_only:  # a fit's logger makes its (empty) version folder first
        after = {k: v for k, v in after.items() if v != "dir" or k in before}
    assert after == before, sorted(set(after.items()) ^ set(before.items()))  # nothing left
    assert _snapshot(next(iter(inputs.values())).parent) == inputs_before  # inputs untouched
    if case.check is None and argv[0] == "assess":  # refused before anything was scored
        assert captured.out == "", captured.out


def test_the_console_script_prints_one_line_and_no_traceback(
    hub: Path, inputs: dict[str, Path], tmp_path: Path
) -> None:
    """The real ``rsfm`` entry point on a raster whose blocks are cut (it gave a traceback)."""
    out = tmp_path / "out.tif"
    command = [sys.executable, "-m", "rsfm.cli", "tile", "seg", str(inputs["body"]), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, "--hub", str(hub)], capture_output=True, text=True, cwd=tmp_path, env=env,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"rsfm tile: error: {inputs['body']}: ")
    assert any(problem in lines[0] for problem in TRUNCATED.split("|"))
    assert list(tmp_path.iterdir()) == []

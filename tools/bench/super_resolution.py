"""Benchmark reference-guided SR against bicubic and the reference-free diffusion baseline.

Trains ``crefdiff_tiny`` and ``srdiff_tiny`` (same UNet, no reference branches) the same way on
synthetic triplets, then prints PSNR / SSIM (luminance), per-band PSNR, LPIPS (when its weights
are local), the no-reference average-gradient ratio and images/s on the held-out triplet, for:
bicubic, the baseline with N full steps, CRefDiff with N full steps from noise, and CRefDiff with
N/4 steps from a better start (noised bicubic estimate / noised reference). The last line
compares better start (N/4 steps) with the full schedule (target: within 0.5 dB).

    python tools/bench/super_resolution.py --train-steps 300 --steps 20

Runs with ONE torch thread by default (``--threads``): on a small shared CPU more intra-op
threads oversubscribe the cores (a training step took 6 s with two threads on a busy 2-core
machine against 0.3 s with one).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch

from rsfm.data.collate import collate_samples
from rsfm.data.datamodules.triplets import TripletDataModule
from rsfm.evaluation.super_resolution import lpips_skip_message, masked_psnr, sr_metrics
from rsfm.tasks.refsr import RefSRTask

BETTER_START_TOLERANCE_DB = 0.5


def train(
    model: str, datamodule: TripletDataModule, steps: int, lr: float, ema_decay: float | None
) -> RefSRTask:
    """Train one variant for ``steps`` optimiser steps (full noise schedule)."""
    pl.seed_everything(0, verbose=False)
    task = RefSRTask(model=model, lr=lr, warmup_epochs=0.05, ema_decay=ema_decay)
    trainer = pl.Trainer(
        max_steps=steps, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, accelerator="auto", devices=1,
    )  # fmt: skip
    trainer.fit(task, datamodule)
    if task.ema is not None:
        task.ema.copy_to(task._trainable())  # evaluate the averaged weights
    return task.eval()


def timed(fn: Callable[[], torch.Tensor], images: int) -> tuple[torch.Tensor, float]:
    """Output of ``fn`` and images per second."""
    began = time.perf_counter()
    with torch.no_grad():
        output = fn()
    return output, images / max(time.perf_counter() - began, 1e-9)


def row(name: str, pred: torch.Tensor, batch: dict[str, Any], speed: float) -> dict[str, Any]:
    """Metrics of one method."""
    hr, valid, changed = batch["hr"], batch["valid"], batch["changed"]
    metrics = sr_metrics(pred, hr, batch["wavelengths"][0])
    span = float(hr.max() - hr.min())
    return {
        "method": name,
        "psnr_y": metrics["psnr_y"],
        "ssim_y": metrics["ssim_y"],
        "psnr_bands": metrics["psnr"],
        "psnr_unchanged": masked_psnr(pred, hr, valid & ~changed, span),
        "psnr_changed": masked_psnr(pred, hr, valid & changed, span),
        "lpips": metrics["lpips"],
        "grad_ratio": metrics["avg_gradient_ratio"],
        "images_per_s": speed,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    """Markdown table of the rows."""
    header = ["method", "PSNR-Y", "SSIM-Y", "PSNR bands", "PSNR unchanged", "PSNR changed",
              "LPIPS", "grad ratio", "images/s"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        lpips = "n/a" if r["lpips"] is None else f"{r['lpips']:.3f}"
        print(
            f"| {r['method']} | {r['psnr_y']:.2f} | {r['ssim_y']:.3f} | {r['psnr_bands']:.2f} | "
            f"{r['psnr_unchanged']:.2f} | {r['psnr_changed']:.2f} | {lpips} | "
            f"{r['grad_ratio']:.2f} | {r['images_per_s']:.1f} |"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=20, help="N: DDIM steps of the full schedule")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=32, help="HR training window side")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--val-windows", type=int, default=16, help="held-out windows scored")
    parser.add_argument("--ema-decay", type=float, default=None, help="EMA of the weights")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    datamodule = TripletDataModule(
        synthetic={"n_scenes": args.scenes, "scene_size_m": 256.0, "scale": args.scale},
        patch_size=args.patch_size, batch_size=args.batch_size,
        train_length=args.batch_size * args.train_steps,
    )  # fmt: skip
    datamodule.setup("fit")
    began = time.perf_counter()
    guided = train("crefdiff_tiny", datamodule, args.train_steps, args.lr, args.ema_decay)
    middle = time.perf_counter()
    baseline = train("srdiff_tiny", datamodule, args.train_steps, args.lr, args.ema_decay)
    print(
        f"trained {args.train_steps} steps: crefdiff_tiny {middle - began:.0f} s, "
        f"srdiff_tiny {time.perf_counter() - middle:.0f} s ({args.threads} thread(s))"
    )
    val = datamodule.val_dataset
    windows = min(len(val), args.val_windows)
    batch = collate_samples([val[i] for i in range(windows)])
    print(f"scored on {windows} held-out windows of {batch['hr'].shape[-1]} px (HR)")
    n, quarter = args.steps, max(1, args.steps // 4)
    images = batch["lr"].shape[0]

    def sample(task: RefSRTask, steps: int, start: str, fraction: float) -> torch.Tensor:
        task.val_start, task.val_start_fraction = start, fraction
        return task.super_resolve(batch, steps=steps)

    hr_size = batch["hr"].shape[-2:]
    bicubic, speed = timed(lambda: guided.model.upsample(batch["lr"], hr_size), images)
    rows = [row("bicubic", bicubic, batch, speed)]
    runs = [
        (f"SRDiff (no reference), {n} steps from noise", baseline, n, "noise", 1.0),
        (f"SRDiff (no reference), better start from LR ({quarter} steps)", baseline, n, "lr", 0.25),
        (f"CRefDiff, {n} steps from noise", guided, n, "noise", 1.0),
        (f"CRefDiff, better start from LR ({quarter} steps)", guided, n, "lr", 0.25),
        (f"CRefDiff, better start from reference ({quarter} steps)", guided, n, "reference", 0.25),
    ]
    for name, task, steps, start, fraction in runs:
        pred, speed = timed(lambda t=task, s=steps, a=start, f=fraction: sample(t, s, a, f), images)
        rows.append(row(name, pred, batch, speed))
    print_table(rows)
    full, better = rows[3]["psnr_y"], rows[4]["psnr_y"]
    verdict = "met" if better >= full - BETTER_START_TOLERANCE_DB else "MISSED"
    print(
        f"better start: {quarter} steps {better:.2f} dB vs {n} full steps {full:.2f} dB "
        f"(difference {better - full:+.2f} dB; target: at most {BETTER_START_TOLERANCE_DB} dB "
        f"below: {verdict}; {rows[4]['images_per_s'] / rows[3]['images_per_s']:.1f}x faster)"
    )
    if rows[0]["lpips"] is None:
        print(lpips_skip_message())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

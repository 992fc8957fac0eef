"""Benchmark: image-text pairs/s of rsfm's CLIPTask training vs a plain open_clip training loop.

Both train the same open_clip architecture on the same pre-built batches (random images,
synthetic land-cover captions tokenised every step), with the same AdamW settings and
open_clip's ``ClipLoss``:

(a) rsfm: ``CLIPTask`` (``RSCLIP`` wrapper, band selection by wavelength, timm optimiser,
    warm-up + cosine schedule, logging, temperature clamp) under a Lightning ``Trainer``;
(b) plain: ``open_clip.create_model`` + tokenizer + ``ClipLoss`` + ``torch.optim.AdamW`` in a
    hand loop, clamping the temperature as open_clip's training script does.

Only steady-state steps are timed (the first ``--warmup`` steps of each run are not). It prints
pairs/s and the overhead ratio (a) time / (b) time (target <= 1.05).

Usage::

    python tools/bench/clip.py                          # rsfm_clip_tiny on CPU, seconds
    python tools/bench/clip.py --arch ViT-B-16 --batch-size 128 --device cuda --precision bf16
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import open_clip
import torch
from open_clip import ClipLoss

from rsfm.models.clip import RSCLIP
from rsfm.sensors import get_sensor
from rsfm.tasks.clip import CLIPTask

PHRASES = ("forest", "cropland", "grassland", "water", "built-up area", "bare soil", "wetland")


def make_batches(
    count: int, batch_size: int, image_size: int, seed: int = 0
) -> list[dict[str, Any]]:
    """``count`` batches of RGB images [B,3,S,S] with wavelengths and captions."""
    generator = torch.Generator().manual_seed(seed)
    waves = torch.tensor(get_sensor("rgb").wavelengths, dtype=torch.float32)
    batches = []
    for step in range(count):
        picks = torch.randint(len(PHRASES), (batch_size, 2), generator=generator).tolist()
        captions = [
            f"a {10 * (1 + (i + step) % 4)} m satellite image of mostly {PHRASES[a]} "
            f"with some {PHRASES[b]}"
            for i, (a, b) in enumerate(picks)
        ]
        batches.append(
            {
                "image": torch.rand(batch_size, 3, image_size, image_size, generator=generator),
                "wavelengths": waves.expand(batch_size, 3).clone(),
                "caption": captions,
                "index": torch.arange(batch_size, dtype=torch.float32),
            }
        )
    return batches


class _StepTimer(pl.Callback):
    """Wall time from the start of step ``warmup`` to the end of the last step."""

    def __init__(self, warmup: int, device: torch.device) -> None:
        self.warmup, self.device = warmup, device
        self.start = self.end = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self._sync()
            self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync()
        self.end = time.perf_counter()


def run_rsfm(
    batches: list[dict[str, Any]], arch: str, warmup: int, device: torch.device, precision: str
) -> float:
    """Seconds of the timed steps of CLIPTask under a Lightning Trainer."""
    torch.manual_seed(0)
    task = CLIPTask(
        model="clip_rs_tiny",
        model_args={"arch": arch, "class_names": None},
        lr=5e-4,
        weight_decay=0.2,
        warmup_epochs=0.0,
        export_dir="",
    )
    timer = _StepTimer(warmup, device)
    trainer = pl.Trainer(
        accelerator=device.type,
        devices=1,
        max_steps=len(batches),
        precision="bf16-mixed" if precision == "bf16" else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(task, train_dataloaders=_loader(batches))
    return timer.end - timer.start


def _loader(batches: list[dict[str, Any]]) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's training-script grouping: no decay for gains, biases, embeddings, scales."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        exclude = param.ndim < 2 or any(k in name for k in ("bn", "ln", "bias", "logit_scale"))
        (no_decay if exclude else decay).append(param)
    return [
        {"params": no_decay, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]


def run_plain(
    batches: list[dict[str, Any]], arch: str, warmup: int, device: torch.device, precision: str
) -> float:
    """Seconds of the timed steps of a hand-written open_clip training loop."""
    torch.manual_seed(0)
    model = open_clip.create_model(arch, device=device)
    tokenizer = open_clip.get_tokenizer(arch)
    loss_fn = ClipLoss(cache_labels=True)
    optimizer = torch.optim.AdamW(_param_groups(model, 0.2), lr=5e-4, betas=(0.9, 0.98))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    model.train()
    start = 0.0
    for step, batch in enumerate(_iterate(batches)):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
        images = batch["image"].to(device, non_blocking=True)
        tokens = tokenizer(batch["caption"]).to(device, non_blocking=True)
        with autocast:
            image_features = model.encode_image(images, normalize=True)
            text_features = model.encode_text(tokens, normalize=True)
            loss = loss_fn(image_features, text_features, model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _iterate(batches: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from _loader(batches)  # the same DataLoader path as the Lightning run


def main() -> None:
    """Parse arguments, run both loops ``--repeats`` times (alternating), print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="rsfm_clip_tiny", help="open_clip architecture")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each, best taken")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    size = RSCLIP(arch=args.arch).image_size
    batches = make_batches(args.warmup + args.steps, args.batch_size, size)
    timed_pairs = args.steps * args.batch_size
    rsfm_times, plain_times = [], []
    for _ in range(args.repeats):  # alternate so drifting machine load hits both alike
        plain_times.append(run_plain(batches, args.arch, args.warmup, device, args.precision))
        rsfm_times.append(run_rsfm(batches, args.arch, args.warmup, device, args.precision))
    best_rsfm, best_plain = min(rsfm_times), min(plain_times)
    print(
        f"\narch {args.arch}  batch {args.batch_size}  device {args.device}  precision "
        f"{args.precision}  timed steps {args.steps} (best of {args.repeats})"
    )
    print(f"{'loop':<34}{'pairs/s':>12}{'s/step':>12}")
    for name, seconds in (("(a) rsfm CLIPTask + Trainer", best_rsfm),
                          ("(b) plain open_clip loop", best_plain)):  # fmt: skip
        print(f"{name:<34}{timed_pairs / seconds:>12.1f}{seconds / args.steps:>12.4f}")
    print(f"overhead ratio (a)/(b) time: {best_rsfm / best_plain:.3f}  (target <= 1.05)")
    print(f"all runs (s): rsfm {[round(t, 3) for t in rsfm_times]}, "
          f"plain {[round(t, 3) for t in plain_times]}")  # fmt: skip


if __name__ == "__main__":
    main()

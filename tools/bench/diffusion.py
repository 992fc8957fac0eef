"""Diffusion benchmark: rsfm's Text2Earth path vs the same UNet driven by plain diffusers code.

Training: samples/s of ``Text2Earth.forward`` (band selection, standardisation, condition
dropping, text tower, resolution features, min-SNR loss) + backward + AdamW step, against a
hand-written diffusers training step on the same UNet and inputs (``DDPMScheduler.add_noise``,
``unet(...)``, MSE, backward, step). Sampling: images/s of ``Text2Earth.generate`` against a
plain diffusers loop (``scheduler.set_timesteps`` / ``scale_model_input`` / batched CFG /
``scheduler.step``) per scheduler and step count. The overhead ratio is rsfm time / plain time
(target <= 1.05).

    python tools/bench/diffusion.py --model text2earth_tiny --batch 16 --repeats 5
    python tools/bench/diffusion.py --device cuda --model text2earth_base --batch 8
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

import rsfm.models.text2earth  # noqa: F401  (registers the variants)
from rsfm.models.layers.diffusion import sampling_scheduler
from rsfm.models.registry import create_model


def _timed(fn: Callable[[], None], repeats: int, device: str) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_training(model: torch.nn.Module, batch: int, repeats: int, device: str) -> dict:
    """Samples/s of one optimiser step: rsfm forward vs plain diffusers on the same UNet."""
    c, h, w = model.diffusion_shape
    size = model.image_size
    images = torch.rand(batch, model.image_channels, size, size, device=device)
    captions = ["mostly forest with a river, at 10 m resolution"] * batch
    gsd = torch.full((batch,), 10.0, device=device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, 1e-4)
    generator = torch.Generator(device=device).manual_seed(0)

    def rsfm_step() -> None:
        loss = model(
            images,
            None,
            captions,
            gsd,
            text_drop=0.1,
            gsd_drop=0.1,
            min_snr_gamma=5.0,
            generator=generator,
        )["loss"]
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    scheduler, unet = model.scheduler, model.unet
    with torch.no_grad():  # conditions precomputed once: the plain loop's best case
        states = model.encode_text(captions)
        resolution = model.resolution_features(gsd)
        clean = model.to_diffusion_space(images)

    def plain_step() -> None:
        noise = torch.randn(clean.shape, generator=generator, device=device)
        timesteps = torch.randint(0, 1000, (batch,), generator=generator, device=device)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        prediction = unet(noisy, timesteps, encoder_hidden_states=states, class_labels=resolution)
        target = scheduler.get_velocity(clean, noise, timesteps)
        loss = torch.nn.functional.mse_loss(prediction.sample.float(), target.float())
        loss.backward()
        optimiser.step()
        optimiser.zero_grad(set_to_none=True)

    del c, h, w
    model.train()
    rsfm_s, plain_s = _timed(rsfm_step, repeats, device), _timed(plain_step, repeats, device)
    return {
        "rsfm_samples_per_s": batch / rsfm_s,
        "plain_samples_per_s": batch / plain_s,
        "overhead_ratio": rsfm_s / plain_s,
    }


def bench_sampling(
    model: torch.nn.Module, batch: int, scheduler_name: str, steps: int, repeats: int, device: str
) -> dict:
    """Images/s of generation with text + resolution CFG: rsfm vs a plain diffusers loop."""
    model.eval()
    captions = ["a dense residential area next to a river"] * batch
    gsd = [1.0] * batch
    shape = (batch, *model.diffusion_shape)

    @torch.no_grad()
    def rsfm_run() -> None:
        generator = torch.Generator(device=device).manual_seed(0)
        model.generate(
            captions,
            gsd,
            steps=steps,
            scheduler=scheduler_name,
            text_scale=5.0,
            gsd_scale=2.0,
            generator=generator,
        )

    sampler = sampling_scheduler(model.scheduler, scheduler_name)
    unet = model.unet

    @torch.no_grad()
    def plain_run() -> None:
        generator = torch.Generator(device=device).manual_seed(0)
        states = model.encode_text(captions)
        null = model.encode_text([""]).expand(batch, -1, -1)
        resolution = model.resolution_features(gsd)
        null_res = model.null_resolution[None].expand(batch, -1)
        text_in = torch.cat([null, states, states])
        res_in = torch.cat([null_res, null_res, resolution])
        sampler.set_timesteps(steps, device=device)
        sample = torch.randn(shape, generator=generator, device=device) * sampler.init_noise_sigma
        for t in sampler.timesteps:
            x = sampler.scale_model_input(sample, t)
            out = unet(torch.cat([x] * 3), t, encoder_hidden_states=text_in, class_labels=res_in)
            p0, p1, p2 = out.sample.chunk(3)
            guided = p0 + 5.0 * (p1 - p0) + 2.0 * (p2 - p1)
            sample = sampler.step(guided, t, sample, generator=generator).prev_sample
        model.to_data_space(sample)

    rsfm_s, plain_s = _timed(rsfm_run, repeats, device), _timed(plain_run, repeats, device)
    return {
        "scheduler": scheduler_name,
        "steps": steps,
        "rsfm_images_per_s": batch / rsfm_s,
        "plain_images_per_s": batch / plain_s,
        "overhead_ratio": rsfm_s / plain_s,
    }


def main() -> None:
    """Run the benchmark and print one JSON document."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="text2earth_tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--sample-batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--schedulers", nargs="+", default=["ddim:20", "euler:20", "dpm:20"])
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    torch.manual_seed(0)
    model = create_model(ns.model).to(ns.device)
    result = {
        "model": ns.model,
        "device": ns.device,
        "batch": ns.batch,
        "training": bench_training(model, ns.batch, ns.repeats, ns.device),
        "sampling": [],
    }
    for item in ns.schedulers:
        name, steps = item.split(":")
        result["sampling"].append(
            bench_sampling(model, ns.sample_batch, name, int(steps), ns.repeats, ns.device)
        )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

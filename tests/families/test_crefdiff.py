"""CRefDiff-style reference-guided SR: model, strength control, training, hub, tiled CLI."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from conftest import CONF, REPO
from filelock import FileLock

from rsfm.cli import main as cli_main
from rsfm.data.collate import collate_samples
from rsfm.data.datamodules.triplets import TripletDataModule
from rsfm.data.triplets import TripletDataset
from rsfm.evaluation.super_resolution import masked_psnr, sr_metrics
from rsfm.models.crefdiff import CRefDiffModel, LocalBranch, crefdiff_tiny, srdiff_tiny
from rsfm.models.registry import create_model, list_models, model_config, model_from_config
from rsfm.tasks.refsr import RefSRTask

TRAIN_STEPS = 100
SYNTHETIC = {"n_scenes": 4, "scene_size_m": 256.0}
MODELS = {"guided": "crefdiff_tiny", "baseline": "srdiff_tiny"}
BENCH = "tools/bench/super_resolution.py"


def _guided_model(seed: int = 0) -> CRefDiffModel:
    """A tiny model whose zero-initialised adapter convs are made non-zero (as after training)."""
    torch.manual_seed(seed)
    model = crefdiff_tiny().eval()
    with torch.no_grad():
        for conv in (*model.residual_convs, model.to_mid):
            conv.weight.normal_(0.0, 0.2)
    return model


def _inputs(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "lr": torch.randn(2, 3, 8, 8, generator=generator),
        "ref_a": torch.randn(2, 3, 32, 32, generator=generator),
        "ref_b": torch.randn(2, 3, 32, 32, generator=generator),
        "noise": torch.randn(2, 3, 32, 32, generator=generator),
    }


def test_registered_variants_and_config_roundtrip() -> None:
    assert {"crefdiff_tiny", "crefdiff_x10", "srdiff_tiny"} <= set(list_models("*diff*"))
    tiny, baseline = crefdiff_tiny(), srdiff_tiny()
    assert tiny.uses_reference and not baseline.uses_reference
    assert not hasattr(baseline, "local") and not hasattr(baseline, "global_tokens")
    # The baseline is the same UNet (only conv_in lacks the reference-guidance channels).
    shapes = {k: v.shape for k, v in tiny.unet.state_dict().items() if k != "conv_in.weight"}
    base = {k: v.shape for k, v in baseline.unet.state_dict().items() if k != "conv_in.weight"}
    assert shapes == base
    assert tiny.unet.conv_in.weight.shape[1] == baseline.unet.conv_in.weight.shape[1] + 6
    rebuilt = model_from_config(model_config(tiny))
    rebuilt.load_state_dict(tiny.state_dict())
    data = _inputs()
    timesteps = torch.tensor([10, 400])
    same = [
        m.eval()(data["noise"], timesteps, data["lr"], data["ref_a"], 0.7) for m in (tiny, rebuilt)
    ]
    assert torch.equal(same[0], same[1]) and same[0].shape == (2, 3, 32, 32)
    x10 = create_model("crefdiff_x10")
    assert (x10.scale, x10.in_channels, len(x10.residual_levels)) == (10, 4, 9)
    assert x10.residual_levels[-1] == (2, 256)


def test_strength_zero_makes_output_independent_of_reference() -> None:
    model, data = _guided_model(), _inputs()
    common = {"steps": 3, "start": "lr", "start_fraction": 1.0, "noise": data["noise"]}
    out_a = model.sample(data["lr"], data["ref_a"], strength=0.0, **common)
    out_b = model.sample(data["lr"], data["ref_b"], strength=0.0, **common)
    no_ref = model.sample(data["lr"], None, **common)
    assert out_a.shape == (2, 3, 32, 32)
    assert torch.equal(out_a, out_b) and torch.equal(out_a, no_ref)
    guided_a = model.sample(data["lr"], data["ref_a"], strength=1.0, **common)
    guided_b = model.sample(data["lr"], data["ref_b"], strength=1.0, **common)
    assert float((guided_a - guided_b).abs().mean()) > 1e-3  # strength 1: the reference matters
    # The global branch alone (adapter convs still zero) is also switched off exactly.
    fresh = crefdiff_tiny().eval()
    t = torch.tensor([5, 500])
    zero_a = fresh(data["noise"], t, data["lr"], data["ref_a"], 0.0)
    assert torch.equal(zero_a, fresh(data["noise"], t, data["lr"], data["ref_b"], 0.0))
    assert not torch.equal(zero_a, fresh(data["noise"], t, data["lr"], data["ref_a"], 1.0))


def test_strength_map_is_respected() -> None:
    model, data = _guided_model(), _inputs()
    t = torch.tensor([50, 300])

    @torch.no_grad()
    def run(reference: torch.Tensor, strength: Any) -> torch.Tensor:
        return model(data["noise"], t, data["lr"], reference, strength)

    zeros, half = torch.zeros(2, 1, 32, 32), torch.full((32, 32), 0.5)
    assert torch.equal(run(data["ref_a"], zeros), run(data["ref_b"], 0.0))
    assert torch.allclose(run(data["ref_a"], half), run(data["ref_a"], 0.5), atol=1e-6)
    right = torch.zeros(2, 1, 32, 32)
    right[..., 16:] = 1.0
    change = (run(data["ref_a"], right) - run(data["ref_b"], right)).abs().mean(dim=(0, 1))
    on, off = float(change[:, 20:].mean()), float(change[:, :12].mean())
    # The reference acts where the map says; elsewhere only through the UNet's receptive field.
    assert on > 1.5 * off
    with pytest.raises(ValueError, match="start must be one of"):
        model.sample(data["lr"], None, start="middle")


class _AttendedIsReference(torch.nn.Module):
    """Stands in for the window attention: the attended features are the reference's own."""

    def forward(self, query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return reference


def test_local_gate_scales_by_the_cosine_similarity_of_lr_and_attended_features() -> None:
    """gate = sigmoid(learned) x (cos(lr, attended) + 1) / 2: 1, 1/2, 0 for identical,
    orthogonal and negated attended features (per pixel, over channels)."""
    torch.manual_seed(0)
    branch = LocalBranch(dim=8, heads=2, window=4, halo=1).eval()
    branch.attend = _AttendedIsReference()
    lr = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(4))
    orthogonal = torch.empty_like(lr)
    orthogonal[:, 0::2], orthogonal[:, 1::2] = -lr[:, 1::2], lr[:, 0::2]  # pairwise rotation
    assert float(F.cosine_similarity(lr, orthogonal, dim=1).abs().max()) < 1e-6
    for reference, factor in ((lr, 1.0), (orthogonal, 0.5), (-lr, 0.0)):
        with torch.no_grad():
            features, gate = branch(lr, reference)
            learned = torch.sigmoid(branch.gate(torch.cat([lr, reference], dim=1)))
            value = branch.value(reference)
        assert gate.shape == (2, 1, 6, 6)
        assert float(learned.min()) > 0.05  # so a missing factor would show
        torch.testing.assert_close(gate, learned * factor, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(features, learned * factor * value, rtol=1e-5, atol=1e-6)
    # The similarity is of directions: a brighter copy of the LR features is still "identical".
    with torch.no_grad():
        _, gate = branch(lr, 3.0 * lr)
        learned = torch.sigmoid(branch.gate(torch.cat([lr, 3.0 * lr], dim=1)))
    torch.testing.assert_close(gate, learned, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- short training
def _fit(model: str, datamodule: TripletDataModule, steps: int) -> RefSRTask:
    pl.seed_everything(0, verbose=False)
    task = RefSRTask(model=model, lr=3e-3, max_timestep_fraction=0.5, warmup_epochs=0.05)
    trainer = pl.Trainer(
        max_steps=steps, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, accelerator="cpu", deterministic=True,
    )  # fmt: skip
    trainer.fit(task, datamodule)
    return task.eval()


def _trained_tasks(datamodule: TripletDataModule, cache: Path) -> dict[str, RefSRTask]:
    """Both tasks, trained once per test run: xdist workers share the weights through ``cache``
    under a file lock (the pytest-xdist recipe for session fixtures)."""
    weights = cache / "crefdiff_trained.pt"
    with FileLock(str(weights) + ".lock"):
        if weights.is_file():
            states = torch.load(weights, weights_only=True)
        else:
            datamodule.setup("fit")
            tasks = {name: _fit(model, datamodule, TRAIN_STEPS) for name, model in MODELS.items()}
            states = {name: task.state_dict() for name, task in tasks.items()}
            torch.save(states, weights)
            return tasks
    datamodule.setup("fit")
    tasks = {}
    for name, model in MODELS.items():
        task = RefSRTask(model=model)
        task.load_state_dict(states[name])
        task.band_stats = {k: v.to_dict() for k, v in datamodule.band_stats.items()}
        tasks[name] = task.eval()
    return tasks


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict[str, Any]:
    """crefdiff_tiny and srdiff_tiny trained the same way on synthetic triplets (fixed seed).

    Training uses 16 px HR windows (cheap); scoring uses the 32 px held-out grid.
    """
    datamodule = TripletDataModule(
        synthetic=SYNTHETIC, patch_size=16, batch_size=8, train_length=8 * TRAIN_STEPS
    )
    base = tmp_path_factory.getbasetemp()
    tasks = _trained_tasks(datamodule, base if worker_id == "master" else base.parent)
    val = datamodule.val_dataset
    windows = TripletDataset(val.triplets, 32, None, lr_stats=val.lr_stats, ref_stats=val.ref_stats)
    batch = collate_samples([windows[i] for i in range(len(windows))])
    return {**tasks, "batch": batch, "datamodule": datamodule}


def test_short_training_beats_bicubic_and_reference_free(trained: dict[str, Any]) -> None:
    batch = trained["batch"]
    hr, valid, changed = batch["hr"], batch["valid"], batch["changed"]
    span = float(hr.max() - hr.min())
    with torch.no_grad():
        guided = trained["guided"].super_resolve(batch, steps=8)
        baseline = trained["baseline"].super_resolve(batch, steps=8)
        bicubic = trained["guided"].model.upsample(batch["lr"], hr.shape[-2:])
    psnr = {
        name: {
            "all": masked_psnr(pred, hr, valid, span),
            "unchanged": masked_psnr(pred, hr, valid & ~changed, span),
            "changed": masked_psnr(pred, hr, valid & changed, span),
        }
        for name, pred in (("guided", guided), ("baseline", baseline), ("bicubic", bicubic))
    }
    print(psnr)
    assert changed[valid].float().mean() > 0.03  # the changed-region PSNR has enough pixels
    assert psnr["guided"]["all"] > psnr["bicubic"]["all"] + 0.5
    # The reference helps where it is still true ...
    assert psnr["guided"]["unchanged"] > psnr["baseline"]["unchanged"] + 0.5
    # ... and is not copied where land cover changed (no worse than reference-free).
    assert psnr["guided"]["changed"] > psnr["baseline"]["changed"] - 0.25
    metrics = sr_metrics(guided, hr, batch["wavelengths"][0])
    smooth = sr_metrics(bicubic, hr, batch["wavelengths"][0])
    free = sr_metrics(baseline, hr, batch["wavelengths"][0])
    assert len(metrics["psnr_bands"]) == 3
    # Luma SSIM: the reference restores structure the reference-free model invents (measured
    # 0.752 vs 0.705); synthesised detail costs little against the smooth bicubic (0.770).
    assert metrics["ssim_y"] > free["ssim_y"] + 0.02, (metrics, free)
    assert metrics["ssim_y"] > smooth["ssim_y"] - 0.05, (metrics, smooth)
    # Sharpness: bicubic keeps half the target's gradients (0.52), the model 0.75.
    assert metrics["avg_gradient_ratio"] > smooth["avg_gradient_ratio"] + 0.1, (metrics, smooth)
    if metrics["lpips"] is not None:  # only with LPIPS backbone weights in the torch hub cache
        assert metrics["lpips"] < smooth["lpips"], (metrics, smooth)  # (not measured offline)


def test_hub_push_and_super_resolve_cli(trained: dict[str, Any], tmp_path: Path) -> None:
    from rsfm.hub import load, push
    from rsfm.inference.super_resolve import super_resolve_main

    hub = tmp_path / "hub"
    push(trained["guided"], "crefdiff-test", hub=str(hub))
    model = load("crefdiff-test", hub=str(hub))
    assert isinstance(model, CRefDiffModel)
    assert set(model.rsfm_card.normalization) == {"lr", "reference"}
    files = trained["datamodule"].val_dataset.triplets[0].files
    common = ["--model", "crefdiff-test", "--hub", str(hub), "--scale", "4", "--steps", "4",
              "--tile-size", "8", "--overlap", "4", "--no-progress"]  # fmt: skip
    out = tmp_path / "sr.tif"
    assert super_resolve_main([str(files.lr), "--ref", str(files.reference), "--out", str(out),
                               "--strength", "0.0", *common]) == 0  # fmt: skip
    other = tmp_path / "sr_other_ref.tif"
    assert super_resolve_main([str(files.lr), "--ref", str(files.hr), "--out", str(other),
                               "--strength", "0", *common]) == 0  # fmt: skip
    guided = tmp_path / "sr_guided.tif"
    assert super_resolve_main([str(files.lr), "--ref", str(files.reference), "--out", str(guided),
                               *common]) == 0  # fmt: skip
    with rasterio.open(files.lr) as lr, rasterio.open(files.hr) as truth:
        lr_transform, lr_shape, crs, target = lr.transform, lr.shape, lr.crs, truth.read()
    with rasterio.open(out) as a, rasterio.open(other) as b, rasterio.open(guided) as g:
        assert a.shape == (lr_shape[0] * 4, lr_shape[1] * 4) and a.crs == crs
        assert a.transform.almost_equals(lr_transform @ rasterio.Affine.scale(0.25))
        assert np.array_equal(a.read(), b.read())  # strength 0: the reference does not matter
        sr = g.read()
    assert np.isfinite(sr).all()
    bicubic = torch.nn.functional.interpolate(
        torch.from_numpy(rasterio.open(files.lr).read())[None], scale_factor=4, mode="bicubic"
    )[0].numpy()
    span = float(target.max() - target.min())

    def psnr(x: np.ndarray) -> float:
        return float(10 * np.log10(span**2 / np.mean((x - target) ** 2)))

    assert psnr(sr) > psnr(bicubic) - 0.5  # tiled and blended, at least bicubic quality


def test_cli_fit_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli_main(["fit", "--config", str(CONF / "crefdiff_tiny.yaml")])
    path = next(tmp_path.rglob("last.ckpt"))
    checkpoint = torch.load(path, weights_only=False)
    assert checkpoint["rsfm_model_config"]["name"] == "crefdiff_tiny"
    assert set(checkpoint["rsfm_band_stats"]) == {"lr", "reference"}
    assert checkpoint["rsfm_task"]["task"] == "super-resolution"
    assert checkpoint["rsfm_task"]["extra"]["scale"] == 4
    # EMA (ema_decay in the config): averaged weights beside the trained ones, never equal.
    state = checkpoint["state_dict"]
    ema = {k[len("ema_model.") :]: v for k, v in state.items() if k.startswith("ema_model.")}
    model = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    assert set(ema) == set(model) and checkpoint["rsfm_ema_step"] == 2
    weight = "unet.conv_in.weight"
    assert not torch.equal(ema[weight], model[weight])
    assert torch.allclose(ema[weight], model[weight], atol=0.05)
    task = RefSRTask.load_from_checkpoint(path)  # EMA keys are taken out before loading
    assert task.ema_decay == 0.9 and torch.equal(task._loaded_ema[weight], ema[weight])


def test_ema_and_min_snr_options() -> None:
    torch.manual_seed(0)
    task = RefSRTask(model="srdiff_tiny", ema_decay=0.5, ema_warmup=False)
    task.on_fit_start()
    before = [p.detach().clone() for p in task._trainable()]

    def shift_and_step(amount: float) -> None:
        with torch.no_grad():
            for param in task._trainable():
                param.add_(amount)
        task.on_train_batch_end(None, None, 0)

    shift_and_step(1.0)  # diffusers' first EMA update copies the weights
    shift_and_step(1.0)  # then EMA = d * old + (1 - d) * new
    decay = task.ema.cur_decay_value
    assert 0.0 < decay < 1.0
    averaged = next(task.ema_network().parameters())
    assert torch.allclose(averaged, before[0] + 1.0 + (1.0 - decay), atol=1e-6)
    assert torch.allclose(next(task.model.parameters()), before[0] + 2.0)  # model unchanged
    task.on_validation_epoch_start()  # validation swaps the averages in ...
    assert torch.allclose(next(task.model.parameters()), averaged)
    task.on_validation_epoch_end()  # ... and back
    assert torch.allclose(next(task.model.parameters()), before[0] + 2.0)
    # Min-SNR: one sample, same timestep and noise -> the loss scales by min(SNR, gamma).
    model, data = srdiff_tiny().eval(), _inputs()
    lr, hr = data["lr"][:1], data["ref_a"][:1]

    @torch.no_grad()
    def loss(gamma: float | None) -> float:
        generator = torch.Generator().manual_seed(3)
        return float(model.training_loss(lr, hr, generator=generator, snr_gamma=gamma))

    generator = torch.Generator().manual_seed(3)  # the loss draws the noise, then the timestep
    torch.randn(hr.shape, generator=generator)
    timestep = torch.randint(0, 1000, (1,), generator=generator)
    alpha = model.train_scheduler.alphas_cumprod[timestep]
    snr = float(alpha / (1 - alpha))
    assert loss(None) > 0
    assert loss(5.0) == pytest.approx(loss(None) * min(snr, 5.0), rel=1e-4)


def test_benchmark_script_runs(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("sr_bench", REPO / BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = ["--train-steps", "2", "--steps", "4", "--scenes", "2", "--patch-size", "16",
            "--val-windows", "2"]  # fmt: skip
    assert bench.main(argv) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 6 and table[1].startswith("| bicubic |")
    assert "scored on 2 held-out windows" in out
    assert "better start: 1 steps" in out and "vs 4 full steps" in out

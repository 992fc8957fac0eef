"""CRefDiff-style reference-guided SR: model, strength control, training, hub, tiled CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import torch
from conftest import CONF

from rsfm.cli import main as cli_main
from rsfm.data.collate import collate_samples
from rsfm.data.triplets import TripletDataModule
from rsfm.evaluation.super_resolution import masked_psnr, sr_metrics
from rsfm.models.crefdiff import CRefDiffModel, crefdiff_tiny, srdiff_tiny
from rsfm.models.registry import create_model, list_models, model_config, model_from_config
from rsfm.tasks.refsr import RefSRTask

TRAIN_STEPS = 100
SYNTHETIC = {"n_scenes": 4, "scene_size_m": 256.0}


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


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    """crefdiff_tiny and srdiff_tiny trained the same way on synthetic triplets (fixed seed)."""
    datamodule = TripletDataModule(
        synthetic=SYNTHETIC, patch_size=32, batch_size=8, train_length=8 * TRAIN_STEPS
    )
    datamodule.setup("fit")
    guided = _fit("crefdiff_tiny", datamodule, TRAIN_STEPS)
    baseline = _fit("srdiff_tiny", datamodule, TRAIN_STEPS)
    batch = collate_samples([datamodule.val_dataset[i] for i in range(len(datamodule.val_dataset))])
    return {"guided": guided, "baseline": baseline, "batch": batch, "datamodule": datamodule}


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
    assert psnr["guided"]["all"] > psnr["bicubic"]["all"] + 0.2
    # The reference helps where it is still true ...
    assert psnr["guided"]["unchanged"] > psnr["baseline"]["unchanged"] + 0.1
    # ... and is not copied where land cover changed (no worse than reference-free).
    assert psnr["guided"]["changed"] > psnr["baseline"]["changed"] - 0.25
    metrics = sr_metrics(guided, hr, batch["wavelengths"][0])
    assert len(metrics["psnr_bands"]) == 3 and 0.0 < metrics["ssim_y"] <= 1.0
    assert metrics["lpips"] is None or metrics["lpips"] >= 0.0
    assert metrics["avg_gradient_ratio"] > 0.5


def test_hub_push_and_super_resolve_cli(trained: dict[str, Any], tmp_path: Path) -> None:
    from rsfm.hub import load, push
    from rsfm.inference.super_resolve import super_resolve_main

    hub = tmp_path / "hub"
    push(trained["guided"], "crefdiff-test", hub=str(hub))
    model = load("crefdiff-test", hub=str(hub))
    assert isinstance(model, CRefDiffModel)
    assert set(model.rsfm_card["rsfm"]["normalization"]) == {"lr", "reference"}
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
    checkpoint = torch.load(next(tmp_path.rglob("last.ckpt")), weights_only=False)
    assert checkpoint["rsfm_model_config"]["name"] == "crefdiff_tiny"
    assert set(checkpoint["rsfm_band_stats"]) == {"lr", "reference"}

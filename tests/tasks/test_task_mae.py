"""MAE task: fixed-batch learning, exact reproducibility, checkpoint contents, resume."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from rsfm.data.datamodules.pretrain import GeoDataModule
from rsfm.data.synthetic.config import SyntheticWorldConfig
from rsfm.hub.checkpoint_keys import TaskFacts
from rsfm.tasks.mae import MAEPretrainTask

TINY_WORLD = SyntheticWorldConfig(seed=0, n_scenes=3, scene_size_m=960)


def _datamodule(**overrides) -> GeoDataModule:
    args = dict(
        synthetic=TINY_WORLD,
        patch_size=32,
        batch_size=8,
        num_workers=0,
        samples_per_epoch=32,
        val_samples=8,
        stats_samples=16,
    )
    args.update(overrides)
    return GeoDataModule(**args)


class LossRecorder(pl.Callback):
    """Keeps every training loss, as a float, in step order."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def _fit(tmp_path: Path, max_epochs: int = 2, **trainer_kwargs) -> tuple[list[float], pl.Trainer]:
    pl.seed_everything(0, workers=True)
    recorder = LossRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        deterministic=True,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        callbacks=[recorder],
        **trainer_kwargs,
    )
    task = MAEPretrainTask(model="smarties_tiny", lr=1e-3, warmup_epochs=0.5)
    trainer.fit(task, datamodule=_datamodule())
    return recorder.losses, trainer


def test_loss_decreases_on_a_fixed_batch() -> None:
    dm = _datamodule()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    if "image" not in batch:
        batch = batch[0] if isinstance(batch, (list, tuple)) else batch
    pl.seed_everything(0)
    task = MAEPretrainTask(model="smarties_tiny", lr=2e-3)
    optimizer = torch.optim.AdamW(task.parameters(), lr=2e-3, betas=(0.9, 0.95))
    losses = []
    for _ in range(40):
        generator = torch.Generator().manual_seed(0)  # same mask every step: a fixed problem
        loss = task._loss(batch, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.6 * losses[0], losses


def test_same_seed_reproduces_losses_exactly(tmp_path: Path) -> None:
    first, _ = _fit(tmp_path / "a")
    second, _ = _fit(tmp_path / "b")
    assert len(first) == len(second) > 0
    assert first == second  # bit-identical, not approximately equal


def test_checkpoint_carries_model_recipe_and_band_stats_and_resumes(tmp_path: Path) -> None:
    _, trainer = _fit(tmp_path / "run", max_epochs=1)
    ckpt_path = Path(
        trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path
    )
    if not ckpt_path.is_file():
        ckpt_path = tmp_path / "manual.ckpt"
        trainer.save_checkpoint(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert ckpt["rsfm_model_config"]["name"] == "smarties_tiny"
    stats = ckpt["rsfm_band_stats"]
    assert "sentinel2_l1c" in stats and "sentinel1_grd" in stats
    s2 = stats["sentinel2_l1c"]
    assert len(s2["mean"]) == 13 and all(v > 0 for v in s2["std"])
    facts = TaskFacts.from_dict(ckpt["rsfm_task"])
    assert (facts.task, facts.output) == ("masked-image-modeling", "embeddings")
    assert facts.patch_size == 8 and facts.input_size == 32
    assert [s.stage for s in facts.stages] == ["pretraining"]
    assert set(facts.stage("pretraining").sensors) == set(stats)  # every sensor it was fed
    steps_after_one = ckpt["global_step"]
    assert steps_after_one > 0

    recorder = LossRecorder()
    trainer2 = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=2,
        logger=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path / "resume",
        callbacks=[recorder],
    )
    task = MAEPretrainTask(model="smarties_tiny", lr=1e-3)
    trainer2.fit(task, datamodule=_datamodule(), ckpt_path=str(ckpt_path))
    assert trainer2.global_step == 2 * steps_after_one  # resumed, did only the second epoch
    assert len(recorder.losses) == steps_after_one
    assert task.band_stats == stats  # the statistics the checkpoint carries


@pytest.mark.parametrize("bad", [0.0, 1.0])
def test_mask_ratio_bounds_are_errors(bad: float) -> None:
    with pytest.raises(ValueError):
        MAEPretrainTask(model="smarties_tiny", mask_ratio=bad)


def test_bf16_mixed_precision_trains_with_finite_loss(tmp_path: Path) -> None:
    losses, trainer = _fit(tmp_path, max_epochs=1, precision="bf16-mixed")
    assert trainer.precision == "bf16-mixed"
    assert losses and all(torch.isfinite(torch.tensor(losses)))

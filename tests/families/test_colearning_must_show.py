"""Co-learning must-show: Sentinel-1 alone is more accurate when co-learned with Sentinel-2.

Slow (two 300-step trainings); the rest of the co-learning tests are in test_colearning.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from rsfm.data.collate import collate_samples
from rsfm.data.datamodules.multimodal import MultiModalDataModule
from rsfm.data.synthetic.config import SyntheticWorldConfig


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """One intra-op thread: tiny models on two busy cores run far faster single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(root: Path, **kwargs) -> pl.Trainer:
    args = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        default_root_dir=root,
    )
    return pl.Trainer(**{**args, **kwargs})


# ----------------------------------------------------------------------------- must show
# Few labels, many pairs (MDiCo's setting: labels are scarce, co-registered pairs are not). Both
# runs train the same S1 branch on the same 32 labelled windows in the same batches with the
# same seed and steps; the co-learned run also sees those windows' S2 and 64 unlabelled S1+S2
# pairs per batch (contrastive + discrimination terms only).
# S1-alone overall accuracy, co-learned minus alone, points (must_show_scores, training seeds):
#   seeds 0..5            +11.4 +11.9 +15.5  +3.1  +7.8  -0.9  (mean +8.1; setting chosen here)
#   seeds 6..11           +12.0  -2.1  +6.0  +4.2 +10.3  +9.5  (mean +6.6)
#   data_seed 1, 0..5      +0.9  +2.9 +15.2  -2.6 +12.5  +4.2  (mean +5.5)
#   all 18: mean +6.8, sd 5.8, 15 positive. Balanced accuracy +2.5 (sd 8.2, 10 positive) and
#   macro F1 +1.8 (sd 7.4, 9 positive) are not established. Without NT-Xent (contrastive
#   weight 0), seeds 0..5: +3.4 -3.2 +11.7 -1.7 -0.2 -10.9 (mean -0.2). docs/colearning.md.
MUST_SHOW = dict(
    patch_size=16,
    labelled_windows=32,
    unlabelled_windows=1024,
    labelled_per_batch=16,
    unlabelled_per_batch=64,
    epochs=150,  # 2 batches per epoch: 300 steps
    lr=2e-3,
    temperature=1.0,
    contrastive_weight=1.0,
    seed=0,
    data_seed=0,
)


def must_show_data() -> dict:
    """The fixed labelled and unlabelled training windows and the 2 held-out scenes' grid."""
    datamodule = MultiModalDataModule(
        synthetic=SyntheticWorldConfig(),
        synthetic_val_scenes=2,
        patch_size=MUST_SHOW["patch_size"],
        val_stride=MUST_SHOW["patch_size"] // 2,
        labelled_windows=MUST_SHOW["labelled_windows"],
        unlabelled_windows=MUST_SHOW["unlabelled_windows"],
        batch_size=MUST_SHOW["labelled_per_batch"],
        unlabelled_batch_size=MUST_SHOW["unlabelled_per_batch"],
        val_samples=100_000,
        stats_samples=64,
        seed=MUST_SHOW["data_seed"],
    )
    datamodule.prepare_data()
    datamodule.setup("fit")

    def read(dataset: Dataset) -> list[dict]:
        return [s for s in map(dataset.__getitem__, range(len(dataset))) if s is not None]

    return {
        "labelled": read(datamodule.train_dataset),
        "unlabelled": read(datamodule._unlabelled),
        "val": read(datamodule.val_dataset),
        "keys": datamodule.modality_keys,
    }


def must_show_scores(model: str, data: dict, seed: int, root: Path) -> dict[str, float]:
    """Train ``model`` with the must-show protocol; S1-alone metrics on the held-out scenes."""
    from rsfm.data.datamodules.multimodal import LabelledUnlabelledBatchSampler
    from rsfm.tasks.colearning import CoLearningTask

    pl.seed_everything(seed)
    task = CoLearningTask(
        model=model,
        lr=MUST_SHOW["lr"],
        temperature=MUST_SHOW["temperature"],
        loss_weights={"contrastive": MUST_SHOW["contrastive_weight"]},
        warmup_epochs=7.5,
        batch_keys=data["keys"],
    )
    paired = len(task.model.modality_names) > 1
    sampler = LabelledUnlabelledBatchSampler(  # the alone run: the same labelled batches
        len(data["labelled"]),
        len(data["unlabelled"]),
        MUST_SHOW["labelled_per_batch"],
        MUST_SHOW["unlabelled_per_batch"] if paired else 0,
        seed=seed,
    )
    train = DataLoader(
        ConcatDataset([data["labelled"], data["unlabelled"]]),
        batch_sampler=sampler,
        collate_fn=collate_samples,
    )
    val = DataLoader(data["val"], batch_size=256, collate_fn=collate_samples)
    epochs = MUST_SHOW["epochs"]
    trainer = _trainer(
        root, max_epochs=epochs, check_val_every_n_epoch=epochs, num_sanity_val_steps=0
    )
    trainer.fit(task, train, val)
    return {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/s1/")}


@pytest.mark.slow
def test_colearning_improves_s1_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sentinel-1 alone at test time: co-learned with Sentinel-2 vs trained alone.

    The synthetic world's S1 (4-look speckle; backscatter of grassland, cropland, wetland and
    bare soil overlaps) is the weak sensor; S2 separates the classes well. 32 labelled windows
    of 6 scenes plus 1024 unlabelled pairs; scored on S1 alone over 1029 windows of 2 held-out
    scenes. Established for overall accuracy only (the table above ``MUST_SHOW``: positive in
    15 of 18 runs, mean +6.7 points); balanced accuracy and macro F1 are not (7 classes, 3
    held-out water windows: within noise). Seed 0 measured 0.475 -> 0.589; asserted +3 points.
    """
    # a private world and band statistics: other tests may cache statistics of the default
    # world computed with other window sizes, which would change these numbers
    monkeypatch.setenv("RSFM_CACHE", str(tmp_path / "cache"))
    data = must_show_data()
    assert len(data["labelled"]) == 32 and len(data["val"]) == 1029
    assert all(int(s["label"]) == -1 for s in data["unlabelled"])
    seed = MUST_SHOW["seed"]
    together = must_show_scores("colearn_tiny_s1s2", data, seed, tmp_path)
    alone = must_show_scores("colearn_tiny_s1", data, seed, tmp_path)
    print("S1 alone, co-learned:", together, "\nS1 alone, trained alone:", alone)
    assert together["val/s1/accuracy"] > alone["val/s1/accuracy"] + 0.03

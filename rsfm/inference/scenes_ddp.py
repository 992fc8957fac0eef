"""Many scenes on many workers: Lightning ``Trainer.predict`` with DDP.

Each rank runs the single-scene engine on its own scenes:

* :class:`SceneSampler` gives rank ``r`` of ``W`` the pending scenes ``r, r + W, ...``
  (disjoint, nothing padded or repeated, unlike a training sampler);
* :class:`SceneTilingModule.predict_step` tiles one scene (the engine writes its COG, renamed
  into place when complete) and returns a small outcome, never the map;
* :class:`SceneRecordWriter`, a ``BasePredictionWriter``, commits each outcome: the scene's STAC
  Item and journal record, then releases the scene's lock.

Rank 0's plan (the scenes still to do) is broadcast when the ranks meet, so every rank splits
the same list even if a STAC search answered differently for one of them. A rank killed
mid-scene leaves the engine's partial file and journal beside the COG; Lightning then stops the
other ranks, and a re-run resumes that scene and skips the finished ones.
"""

from __future__ import annotations

import argparse
import logging
import os
import warnings
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, Sampler

from rsfm.inference.scenes import Outcome, Scene, SceneWorker

# Ranks meet after their last scene; one rank's scenes may take hours longer than another's.
BARRIER_TIMEOUT = timedelta(days=7)


class SceneSampler(Sampler[int]):
    """Scene indexes of one rank: ``rank, rank + world_size, ...`` (disjoint across ranks)."""

    def __init__(self, count: int, world_size: int, rank: int) -> None:
        self.count, self.world_size, self.rank = count, world_size, rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.count, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.count, self.world_size))


def _first(batch: list[int]) -> int:
    return batch[0]


class SceneTilingModule(LightningModule):
    """Holds the hub model (Lightning moves it to the rank's device) and tiles scenes."""

    def __init__(self, worker: SceneWorker, scenes: list[Scene]) -> None:
        super().__init__()
        self.worker = worker
        self.model = worker.model
        self.scenes = scenes

    def setup(self, stage: str) -> None:
        """Take rank 0's plan; split the CPU cores between the ranks of a node."""
        self.scenes = self.trainer.strategy.broadcast(self.scenes, src=0)
        if self.worker.args.accelerator == "cpu":
            per_node = max(1, self.trainer.world_size // max(self.trainer.num_nodes, 1))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // per_node))

    def predict_dataloader(self) -> DataLoader:
        sampler = SceneSampler(len(self.scenes), self.trainer.world_size, self.global_rank)
        indexes = list(range(len(self.scenes)))
        return DataLoader(indexes, batch_size=1, sampler=sampler, collate_fn=_first)

    def predict_step(self, batch: int, batch_idx: int) -> Outcome:
        self.worker.rank = self.global_rank
        self.worker.args.device = str(self.device)
        return self.worker.process(self.scenes[batch])

    def on_predict_end(self) -> None:
        self.trainer.strategy.barrier("rsfm-tile-scenes")  # every scene committed


class SceneRecordWriter(BasePredictionWriter):
    """Commits each scene as its batch ends: STAC Item, journal record, lock released."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Outcome,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        worker: SceneWorker = pl_module.worker
        worker.commit(prediction)
        if prediction.status == "done":
            seconds = prediction.record["seconds"]
            worker.say(prediction.scene, f"done in {seconds:.1f}s (rank {trainer.global_rank})")


def run_ddp(worker: SceneWorker, pending: list[Scene], args: argparse.Namespace) -> int:
    """Tile ``pending`` over ``args.devices`` x ``args.num_nodes`` ranks; returns this
    process's global rank (only rank 0 goes on to write the mosaics and the report).

    From the shell, Lightning starts the other local ranks by running the same command again
    (``LOCAL_RANK`` set); under torchrun or SLURM it joins the ranks they started.
    """
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*predict_dataloader.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")  # torch's pytree via Lightning
    trainer = Trainer(
        accelerator=args.accelerator,
        devices=args.devices,
        num_nodes=args.num_nodes,
        strategy=DDPStrategy(
            process_group_backend="nccl" if args.accelerator == "gpu" else "gloo",
            timeout=BARRIER_TIMEOUT,
        ),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[SceneRecordWriter()],
    )
    trainer.predict(SceneTilingModule(worker, pending), return_predictions=False)
    return trainer.global_rank

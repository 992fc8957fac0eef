"""Shared fixtures: an isolated cache and user hub, a tiny synthetic world, and the real-data
folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "tests" / "conf"

# One intra-op thread: on 2 busy cores, more threads oversubscribe (UPerNet steps ran 80x
# slower with two threads while DataLoader workers and other tests shared the cores).
torch.set_num_threads(1)


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (or $RSFM_SHARED_DATA), None when absent."""
    env = os.environ.get("RSFM_SHARED_DATA")
    candidate = Path(env) if env else REPO.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real sensor samples; skips the test when they are absent."""
    path = shared_data_dir()
    if path is None:
        pytest.skip("../shared/data is absent")
    return path


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point RSFM_CACHE at a per-session directory unless CI set one to reuse."""
    if "RSFM_CACHE" in os.environ:
        return Path(os.environ["RSFM_CACHE"])
    cache = tmp_path_factory.mktemp("rsfm_cache")
    os.environ["RSFM_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session", autouse=True)
def isolated_user_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point RSFM_HUB (the user hub, where pushes without a hub write) at a per-session folder,
    always: no test writes into ~/.cache/rsfm/hub or a hub the developer set. Lookups still
    find the shipped checkpoints/ after it."""
    user_hub = tmp_path_factory.mktemp("rsfm_user_hub")
    os.environ["RSFM_HUB"] = str(user_hub)
    return user_hub

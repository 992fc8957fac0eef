"""Pretrained-model hub: safetensors weights, config.json, a model card, sha256 index.

A hub is a folder (default ``checkpoints/`` or ``$RSFM_HUB``), a ``file://`` URL, or a Hugging
Face repo ``hf://owner/repo``; entries are ``<hub>/<name>@<version>/``. See ``docs/hub.md``.
"""

from rsfm.hub.backends import FetchedEntry, HuggingFaceHub, LocalHub, open_hub
from rsfm.hub.entry import (
    EntryExistsError,
    EntryNotFoundError,
    EntryRef,
    HubError,
    IntegrityError,
    InvalidNameError,
)
from rsfm.hub.store import (
    describe,
    entry_config,
    list_models,
    load,
    load_card,
    load_weights,
    pull,
    push,
    push_checkpoint,
    resolve_checkpoint,
    save_pretrained,
    save_weights,
    verify,
)

__all__ = [
    "EntryExistsError",
    "EntryNotFoundError",
    "EntryRef",
    "FetchedEntry",
    "HubError",
    "HuggingFaceHub",
    "IntegrityError",
    "InvalidNameError",
    "LocalHub",
    "describe",
    "entry_config",
    "list_models",
    "load",
    "load_card",
    "load_weights",
    "open_hub",
    "pull",
    "push",
    "push_checkpoint",
    "resolve_checkpoint",
    "save_pretrained",
    "save_weights",
    "verify",
]

"""Pretrained-model hub: safetensors weights, config.json, a model card, sha256 index.

A hub is a folder, a ``file://`` URL, or a Hugging Face repo ``hf://owner/repo``; entries are
``<hub>/<name>@<version>/``. Without one, pushes go to the user hub (``$RSFM_HUB``, else
``~/.cache/rsfm/hub``) and lookups search it, then the shipped ``checkpoints/`` of the
repository. See ``docs/hub.md``.

The names below load on first use (PEP 562): ``import rsfm.hub.commands`` (``rsfm hub --help``)
does not import torch; ``from rsfm.hub import load`` imports the store, and torch with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rsfm.lazy import lazy_exports

# public name -> the submodule that defines it
_EXPORTS = {
    "FetchedEntry": "backends",
    "HuggingFaceHub": "backends",
    "LocalHub": "backends",
    "SearchHub": "backends",
    "open_hub": "backends",
    "shipped_hubs": "backends",
    "user_hub_location": "backends",
    "EntryExistsError": "entry",
    "EntryNotFoundError": "entry",
    "EntryRef": "entry",
    "HubError": "entry",
    "IntegrityError": "entry",
    "InvalidNameError": "entry",
    "describe": "store",
    "entry_config": "store",
    "list_models": "backends",
    "load": "store",
    "load_card": "store",
    "load_config": "store",
    "load_untrained": "store",
    "ModelCard": "card",
    "load_weights": "store",
    "pull": "store",
    "push": "store",
    "push_checkpoint": "store",
    "resolve_checkpoint": "store",
    "save_pretrained": "store",
    "save_weights": "store",
    "verify": "store",
}

if TYPE_CHECKING:
    from rsfm.hub.backends import (
        FetchedEntry,
        HuggingFaceHub,
        LocalHub,
        SearchHub,
        list_models,
        open_hub,
        shipped_hubs,
        user_hub_location,
    )
    from rsfm.hub.card import ModelCard
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
        load,
        load_card,
        load_config,
        load_untrained,
        load_weights,
        pull,
        push,
        push_checkpoint,
        resolve_checkpoint,
        save_pretrained,
        save_weights,
        verify,
    )


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

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
    "SearchHub",
    "describe",
    "entry_config",
    "list_models",
    "load",
    "load_card",
    "load_config",
    "load_untrained",
    "ModelCard",
    "load_weights",
    "open_hub",
    "pull",
    "push",
    "push_checkpoint",
    "resolve_checkpoint",
    "save_pretrained",
    "save_weights",
    "shipped_hubs",
    "user_hub_location",
    "verify",
]

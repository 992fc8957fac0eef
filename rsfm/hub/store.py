"""Save, push, pull and load pretrained models: safetensors + config.json + card.md.

Loading never unpickles: weights are safetensors, the architecture is rebuilt from
``config.json`` by :func:`rsfm.models.registry.model_from_config` (classes of the model registry
only), and every file is read once, as a regular file (never through a symbolic link), its
sha256 checked against the hub's ``index.json``, and those same bytes parsed and loaded.
``torch.load`` appears once, in :func:`push_checkpoint`, on the user's own Lightning checkpoint
(``weights_only=True`` unless ``trusted=True``).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_model
from torch import nn

import rsfm
from rsfm.hub.backends import FetchedEntry, Hub, HubLike, LocalHub, open_hub
from rsfm.hub.card import DEFAULT_LICENSE, ModelCard, facts_fields, jsonable
from rsfm.hub.card_body import parse_card, render_card
from rsfm.hub.checkpoint_keys import BAND_STATS, MODEL_CONFIG, TASK, TaskFacts
from rsfm.hub.entry import (
    CARD_NAME,
    CONFIG_NAME,
    ENTRY_FILES,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    EntryExistsError,
    EntryNotFoundError,
    EntryReader,
    EntryRef,
    HubError,
    InvalidNameError,
    next_version,
    normalize_version,
    sha256_bytes,
    umask_mode,
    validate_name,
    verify_files,
)
from rsfm.models.registry import ModelConfigError, model_config, model_from_config

_CHECKPOINT_PREFIX = "model."  # attribute every rsfm task keeps its network under


# ------------------------------------------------------------------------------------ weights
def save_weights(model: nn.Module, path: str | os.PathLike[str]) -> None:
    """Write a module's weights as safetensors (shared/tied tensors stored once)."""
    # safetensors' save_model drops duplicate names of shared storage and makes tensors
    # contiguous; save_file alone refuses tied weights.
    save_model(model, os.fspath(path), metadata={"format": "pt"})


def _shared_groups(state: Mapping[str, torch.Tensor]) -> list[set[str]]:
    """Names of a state dict that share storage (tied weights), groups of two or more."""
    groups: dict[tuple[str, int], set[str]] = {}
    for name, tensor in state.items():
        if tensor.device.type == "meta":
            continue
        pointer = tensor.untyped_storage().data_ptr()
        if pointer:
            groups.setdefault((str(tensor.device), pointer), set()).add(name)
    return [group for group in groups.values() if len(group) > 1]


def load_state_bytes(
    model: nn.Module, data: bytes, where: str | os.PathLike[str], device: str = "cpu"
) -> None:
    """Load safetensors bytes (already read and hashed) into ``model`` strictly.

    A tied tensor stored once under one of its names (``save_weights``) fills its aliases.

    Raises:
        HubError: Naming ``where`` and the unreadable data or missing / unexpected tensors.
    """
    try:
        state = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as err:
        raise HubError(f"{where}: not a readable safetensors file: {err}") from None
    if torch.device(device).type != "cpu":
        state = {key: value.to(device) for key, value in state.items()}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that do not fit
        raise HubError(f"{where}: weights do not fit {type(model).__name__}: {err}") from None
    left = set(missing)
    for group in _shared_groups(model.state_dict()):
        if group & set(state):
            left -= group
    if left or unexpected:
        parts = [f"missing {sorted(left)}"] if left else []
        parts += [f"unexpected {sorted(unexpected)}"] if unexpected else []
        raise HubError(f"{where}: weights do not fit {type(model).__name__}: {'; '.join(parts)}")


def load_weights(model: nn.Module, path: str | os.PathLike[str], device: str = "cpu") -> None:
    """Load a safetensors file into ``model`` strictly (tied tensors re-shared).

    Raises:
        HubError: Naming the file and the missing / unexpected tensors.
    """
    load_state_bytes(model, Path(path).read_bytes(), path, device)


def entry_config(model: nn.Module) -> dict[str, Any]:
    """``config.json`` content: registered name, class path, init args, rsfm/format versions."""
    return {
        **model_config(model),
        "rsfm_version": rsfm.__version__,
        "format_version": FORMAT_VERSION,
    }


def _n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _write_entry(model: nn.Module, folder: Path, card: Mapping[str, Any], load_ref: str) -> None:
    """Write ``model.safetensors``, ``config.json`` and ``card.md`` into an existing folder."""
    config = entry_config(model)
    typed = ModelCard.build(config, card, _n_parameters(model))
    save_weights(model, folder / WEIGHTS_NAME)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (folder / CARD_NAME).write_text(render_card(typed, load_ref), encoding="utf-8")
    umask_mode(folder / WEIGHTS_NAME)  # safetensors writes 0600


def _unwrap(model: nn.Module) -> tuple[nn.Module, dict[str, Any], TaskFacts | None]:
    """The network to save, the card fields a task brings (its statistics and
    hyper-parameters) and the task's facts (``task.task_facts()``, when it has them)."""
    inner = getattr(model, "model", None)
    if isinstance(getattr(model, "init_args", None), dict) or not isinstance(inner, nn.Module):
        return model, {}, None
    fields: dict[str, Any] = {}
    if getattr(model, "band_stats", None):
        fields["normalization"] = model.band_stats
    if getattr(model, "hparams", None):
        fields["training"] = {"hyper_parameters": jsonable(dict(model.hparams))}
    task_facts = getattr(model, "task_facts", None)
    facts = task_facts() if callable(task_facts) else None
    if facts is not None and not isinstance(facts, TaskFacts):
        facts = TaskFacts.from_dict(facts)  # a task still returning the plain dict
    return inner, fields, facts


def _component(model: nn.Module, component: str | None) -> nn.Module:
    if not component:
        return model
    try:
        return model.get_submodule(component)
    except AttributeError:
        children = [name for name, _ in model.named_children()]
        raise HubError(
            f"{type(model).__name__} has no component {component!r}; its parts: {children}"
        ) from None


# --------------------------------------------------------------------------------- save / push
def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike[str],
    *,
    card: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write one entry folder (``model.safetensors``, ``config.json``, ``card.md``) atomically.

    The folder is not indexed: :func:`load` it with ``verify=False``, or :func:`push` the model
    to a hub to get recorded hashes.

    Args:
        model: A registered rsfm model (or a submodule recording ``init_args``), or a task.
        directory: Target folder; written in a sibling temporary folder, then renamed.
        card: Model-card fields (see :data:`rsfm.hub.card.CARD_FIELDS`).
        overwrite: Replace an existing non-empty folder.

    Raises:
        EntryExistsError: If the folder exists, is not empty and ``overwrite`` is False.
    """
    target = Path(directory).expanduser()
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise EntryExistsError(f"{target} exists and is not empty; pass overwrite=True")
    module, fields, facts = _unwrap(model)
    fields.update(facts_fields(facts))
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask_mode(staged, directory=True)
    try:
        _write_entry(module, staged, {**fields, **(card or {})}, str(target))
        retired = None
        if target.exists():
            retired = target.rename(target.with_name(f".{target.name}.{uuid.uuid4().hex}.old"))
        os.rename(staged, target)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return target


def _staging(backend: Hub) -> Path:
    staging_dir = getattr(backend, "staging_dir", None)  # a local hub, or the default hub
    if callable(staging_dir):
        return staging_dir()
    staged = Path(tempfile.mkdtemp(prefix="rsfm-hub-"))
    umask_mode(staged, directory=True)
    return staged


def _new_ref(backend: Hub, name: str, version: str | None) -> EntryRef:
    validate_name(name)
    if version is not None:
        return EntryRef(name, normalize_version(version))
    return EntryRef(name, next_version(backend.read_index().versions(name)))


def push(
    model_or_checkpoint: nn.Module | str | os.PathLike[str],
    name: str,
    version: str | None = None,
    hub: HubLike = None,
    card: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
    component: str | None = None,
) -> EntryRef:
    """Push a model (or a Lightning checkpoint / run folder) into a hub as ``name@version``.

    Args:
        model_or_checkpoint: A registered rsfm model, a task (its ``model`` is pushed with its
            band statistics and, through ``task.task_facts()``, its task facts), or a path
            (see :func:`push_checkpoint`).
        name: Model name (``[A-Za-z0-9][A-Za-z0-9._-]*``).
        version: Version such as ``1.2``; None = ``1.0`` for a new name, else the latest with
            its last number increased.
        hub: Hub path, ``file://`` URL, ``hf://owner/repo``, or None: the user hub
            (``$RSFM_HUB``, else ``~/.cache/rsfm/hub``; see :func:`rsfm.hub.backends.open_hub`).
        card: Model-card fields (see :data:`rsfm.hub.card.CARD_FIELDS`).
        overwrite: Replace an existing ``name@version``.
        component: Push only this submodule (e.g. ``encoder``).

    Returns:
        The exact reference written.

    Raises:
        InvalidNameError: For unsafe names or versions.
        EntryExistsError: If ``name@version`` exists and ``overwrite`` is False.
    """
    if isinstance(model_or_checkpoint, str | os.PathLike):
        return push_checkpoint(
            model_or_checkpoint, name, version, hub, component, card=card, overwrite=overwrite
        )
    backend = open_hub(hub)
    ref = _new_ref(backend, name, version)
    module, fields, facts = _unwrap(model_or_checkpoint)
    loaded = getattr(module, "rsfm_card", None)  # a model from `load`: its card's facts stay
    if isinstance(loaded, ModelCard) and not component:
        fields = {**loaded.fields(), **fields}
    module = _component(module, component)
    fields = {**fields, **facts_fields(facts, component), "component": component, **(card or {})}
    fields.update(name=ref.name, version=ref.version)
    staged = _staging(backend)
    try:
        _write_entry(module, staged, fields, ref.key)
        return backend.add_entry(staged, ref, overwrite=overwrite)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def resolve_checkpoint(path: str | os.PathLike[str], best: bool = False) -> Path:
    """The checkpoint file of a path: the file itself, or in a run folder ``last.ckpt``
    (``best=True``: the best checkpoint recorded by ModelCheckpoint, else the newest).

    Raises:
        FileNotFoundError: If the path does not exist or holds no ``.ckpt``.
    """
    source = Path(path).expanduser()
    if source.is_file():
        return source
    if not source.is_dir():
        raise FileNotFoundError(f"no checkpoint file or run folder at {source}")
    found = sorted(source.rglob("*.ckpt"), key=lambda c: (c.stat().st_mtime, str(c)))
    if not found:
        raise FileNotFoundError(f"no .ckpt file under {source}")
    last = [c for c in found if c.name == "last.ckpt"]
    if last and not best:
        return last[-1]
    newest = (last or found)[-1]
    try:
        state = torch.load(newest, map_location="cpu", weights_only=True).get("callbacks", {})
    except Exception:  # unreadable here: fall back to the newest file
        return newest
    recorded = [Path(s.get("best_model_path") or "").name for s in state.values()]
    return next((c for c in found if c.name in recorded and c.name), newest)


def _read_checkpoint(path: Path, trusted: bool) -> dict[str, Any]:
    with path.open("rb") as handle:
        head = handle.read(4)
    if not head:
        raise HubError(f"{path}: the file is empty (0 bytes), not a checkpoint")
    if not head.startswith((b"PK", b"\x80")):  # torch.save writes a zip (legacy: a pickle)
        raise HubError(
            f"{path}: not a PyTorch checkpoint (neither the zip archive torch.save writes nor a "
            "pickle); give the .ckpt file of an rsfm run or its run folder"
        )
    try:
        # The only torch.load of the hub: the user's own checkpoint, restricted to plain data
        # and tensors unless the user vouches for it.
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as err:
        raise HubError(
            f"{path}: torch.load(weights_only=True) refuses an object in this checkpoint "
            f"({str(err).splitlines()[0]}); if you wrote it yourself, pass trusted=True "
            "(rsfm hub push --trust-checkpoint)"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise HubError(f"{path}: unreadable or truncated checkpoint: {err}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise HubError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    if MODEL_CONFIG not in checkpoint:
        raise HubError(
            f"{path} has no {MODEL_CONFIG!r}: not written by an rsfm task, so its "
            "architecture is unknown"
        )
    return checkpoint


def _model_state(
    state_dict: Mapping[str, torch.Tensor], model: nn.Module, prefix: str | None, path: Path
) -> dict[str, torch.Tensor]:
    """The model's tensors of a task's state dict, with the task's attribute prefix stripped."""
    expected = list(model.state_dict())
    if prefix is not None:
        candidates = [prefix]
    else:  # "model." first, then any prefix under which the model's first tensor appears
        probe = expected[0]
        found = {k[: -len(probe)] for k in state_dict if k.endswith(probe)}
        candidates = [_CHECKPOINT_PREFIX] + sorted(found - {_CHECKPOINT_PREFIX}, key=len)
    for candidate in candidates:
        if all(candidate + key in state_dict for key in expected):
            return {key: state_dict[candidate + key] for key in expected}
    missing = [k for k in expected if _CHECKPOINT_PREFIX + k not in state_dict][:5]
    raise HubError(
        f"{path}: the state_dict does not hold the weights of {type(model).__name__} under "
        f"prefix(es) {candidates}; e.g. missing {missing}"
    )


def _checkpoint_metrics(checkpoint: Mapping[str, Any]) -> dict[str, float]:
    """``{monitor: best score}`` of the checkpoint's ModelCheckpoint callbacks."""
    metrics = {}
    for state in (checkpoint.get("callbacks") or {}).values():
        if (
            isinstance(state, dict)
            and state.get("monitor")
            and state.get("best_model_score") is not None
        ):
            metrics[str(state["monitor"])] = float(state["best_model_score"])
    return metrics


def push_checkpoint(
    ckpt_path: str | os.PathLike[str],
    name: str,
    version: str | None = None,
    hub: HubLike = None,
    component: str | None = None,
    metrics: Mapping[str, float] | None = None,
    license: str = DEFAULT_LICENSE,
    *,
    card: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    best: bool = False,
    prefix: str | None = None,
    trusted: bool = False,
) -> EntryRef:
    """Push the network of an rsfm task's Lightning checkpoint (optimiser state is dropped).

    The architecture comes from the checkpoint's ``rsfm_model_config``, the weights from its
    ``state_dict`` (task prefix such as ``model.`` stripped), the normalisation from
    ``rsfm_band_stats``, the task facts (task, output kind, class names, ignore index,
    input/patch size, training stages) from ``rsfm_task``, the training config from
    ``hyper_parameters`` (keys: :mod:`rsfm.hub.checkpoint_keys`).

    Args:
        ckpt_path: A ``.ckpt`` file or a run folder (see :func:`resolve_checkpoint`).
        name: Model name.
        version: Version; None = next version (see :func:`push`).
        hub: Target hub (see :func:`push`).
        component: Push only this submodule, e.g. ``encoder`` of an MAE.
        metrics: Metrics for the card; None = the best score of ModelCheckpoint, if monitored.
        license: License identifier for the card.
        card: Further card fields (override the derived ones).
        overwrite: Replace an existing ``name@version``.
        best: For a run folder, take the best checkpoint instead of ``last.ckpt``.
        prefix: State-dict prefix of the network (None = ``model.`` or detected).
        trusted: Let ``torch.load`` unpickle arbitrary objects (only for your own files).

    Raises:
        HubError: If the checkpoint is unreadable, not from an rsfm task, or lacks weights.
    """
    path = resolve_checkpoint(ckpt_path, best=best)
    checkpoint = _read_checkpoint(path, trusted)
    model = _build(checkpoint[MODEL_CONFIG], f"{path} ({MODEL_CONFIG})")
    try:
        model.load_state_dict(_model_state(checkpoint["state_dict"], model, prefix, path))
    except RuntimeError as err:  # shapes that contradict rsfm_model_config
        raise HubError(f"{path}: weights do not fit its {MODEL_CONFIG}: {err}") from None
    training = {
        "hyper_parameters": checkpoint.get("hyper_parameters") or {},
        "datamodule_hyper_parameters": checkpoint.get("datamodule_hyper_parameters") or {},
        "global_step": checkpoint.get("global_step"),
        "epoch": checkpoint.get("epoch"),
        "lightning_version": checkpoint.get("pytorch-lightning_version"),
        "checkpoint": path.name,
    }
    facts = TaskFacts.from_dict(checkpoint.get(TASK))
    fields = {
        **facts_fields(facts, component),
        "normalization": checkpoint.get(BAND_STATS) or {},
        "metrics": dict(metrics) if metrics is not None else _checkpoint_metrics(checkpoint),
        "license": license,
        "training": jsonable({k: v for k, v in training.items() if v not in (None, {})}),
        **(card or {}),
    }
    del checkpoint  # optimiser and scheduler states are never written
    return push(model, name, version, hub, fields, overwrite=overwrite, component=component)


# --------------------------------------------------------------------------------- pull / load
def pull(
    name: str, source_hub: HubLike, dest_hub: HubLike = None, *, overwrite: bool = False
) -> EntryRef:
    """Copy ``name[@version]`` from one hub into another, verifying hashes on both sides.

    An identical entry already in the destination is left as is.

    Raises:
        EntryExistsError: If the destination has different files under that name@version.
        IntegrityError: If the source files do not match the source index.
    """
    source = open_hub(source_hub).fetch(EntryRef.parse(name))
    dest = open_hub(dest_hub)
    existing = dest.read_index().entries.get(source.ref.key)
    if existing is not None and existing["files"] == source.record["files"]:
        return source.ref
    if existing is not None and not overwrite:
        raise EntryExistsError(
            f"{source.ref.key} exists in {dest.location} with other files; pass overwrite=True"
        )
    staged = _staging(dest)
    try:
        for file_name in source.record["files"]:  # the verified bytes, not a second read
            (staged / file_name).write_bytes(source.contents[file_name])
            umask_mode(staged / file_name)
        verify_files(staged, source.record, source.ref.key)
        return dest.add_entry(staged, source.ref, overwrite, created=source.record["created"])
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _looks_like_path(name_or_path: str | os.PathLike[str]) -> bool:
    if isinstance(name_or_path, os.PathLike):
        return True
    return any(sep in name_or_path for sep in ("/", os.sep)) or name_or_path.startswith(("~", "."))


def _entry_folder(name_or_path: str | os.PathLike[str]) -> Path:
    """The absolute folder a path names; its parents' links are resolved, not its own (an
    entry folder that is a link is refused when it is read)."""
    path = Path(name_or_path).expanduser()
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def _open_entry(
    name_or_path: str | os.PathLike[str], hub: HubLike, verify: bool
) -> tuple[Path, dict[str, bytes]]:
    """Folder and file bytes of an entry, read once (hash-verified, or an unindexed folder
    read as is when ``verify=False``); links are refused either way."""
    if not _looks_like_path(name_or_path):
        entry = open_hub(hub).fetch(EntryRef.parse(name_or_path))
        return entry.path, entry.contents
    folder = _entry_folder(name_or_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    if not verify:
        with EntryReader(folder, str(folder)) as reader:
            return folder, {name: reader.read(name) for name in ENTRY_FILES}
    hint = (
        f"{folder} is not an entry listed in {folder.parent / 'index.json'}; push it to a hub, "
        "or pass verify=False to load an unindexed folder (e.g. from save_pretrained)"
    )
    try:
        ref = EntryRef.parse(folder.name)
    except InvalidNameError:
        raise EntryNotFoundError(hint) from None
    if ref.version is None:
        raise EntryNotFoundError(hint)
    try:
        entry = LocalHub(folder.parent).fetch(ref)
    except EntryNotFoundError:
        raise EntryNotFoundError(hint) from None
    return entry.path, entry.contents


def _locate(name_or_path: str | os.PathLike[str], hub: HubLike, verify: bool) -> Path:
    """Local folder of a verified entry (or of an unindexed folder, when ``verify=False``).

    Callers that read files should use the verified bytes of :func:`_open_entry` instead of
    reopening them in this folder.
    """
    if verify or not _looks_like_path(name_or_path):
        return _open_entry(name_or_path, hub, verify)[0]
    folder = _entry_folder(name_or_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder at {folder}")
    return folder


def _text(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise HubError(f"{path}: not UTF-8 text: {err}") from None


def _parse_config(data: bytes, path: Path) -> dict[str, Any]:
    try:
        config = json.loads(_text(data, path))
    except ValueError as err:
        raise HubError(f"{path}: invalid JSON: {err}") from None
    if not isinstance(config, dict):
        raise HubError(f"{path}: expected a JSON object, got {type(config).__name__}")
    try:
        newer = int(config.get("format_version", FORMAT_VERSION)) > FORMAT_VERSION
    except (TypeError, ValueError):
        raise HubError(
            f"{path}: format_version {config['format_version']!r} is not a number"
        ) from None
    if newer:
        raise HubError(
            f"{path} has format {config['format_version']}; this rsfm reads up "
            f"to {FORMAT_VERSION}: upgrade rsfm"
        )
    return config


def _build(config: Any, where: str | os.PathLike[str]) -> nn.Module:
    """:func:`model_from_config`, every refusal or failure a :class:`HubError` naming
    ``where`` (the config.json file) and the class path."""
    try:
        return model_from_config(config)
    except ModelConfigError as err:
        raise HubError(f"{where}: {err}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        class_path = config.get("class_path") if isinstance(config, Mapping) else None
        raise HubError(f"{where}: cannot build {class_path!r} from its init_args: {err}") from None


def load(
    name_or_path: str | os.PathLike[str],
    hub: HubLike = None,
    *,
    verify: bool = True,
    device: str = "cpu",
) -> nn.Module:
    """Rebuild a pushed model in eval mode, its typed card attached as ``model.rsfm_card``
    (a :class:`~rsfm.hub.card.ModelCard`) and the sha256 of the weights loaded as
    ``model.rsfm_weights_sha256``.

    Every file is read once; the bytes hashed are the bytes parsed and loaded.

    Args:
        name_or_path: ``name``, ``name@version`` (resolved in ``hub``), or an entry folder path
            (verified against the ``index.json`` of its parent folder).
        hub: Hub for names (see :func:`push`; None searches the user hub, then the shipped
            ``checkpoints/``).
        verify: Check sha256 against the index first (only a path may skip it).
        device: Device the weights are loaded onto.

    Raises:
        EntryNotFoundError: If the entry is not in the index.
        IntegrityError: Naming the file whose hash differs, or a file that is a link.
        HubError: For a config.json that names a class outside the model registry.
    """
    folder, contents = _open_entry(name_or_path, hub, verify)
    config = _parse_config(contents[CONFIG_NAME], folder / CONFIG_NAME)
    card = parse_card(_text(contents[CARD_NAME], folder / CARD_NAME), str(folder / CARD_NAME))
    model = _build(config, folder / CONFIG_NAME)
    weights = contents[WEIGHTS_NAME]
    load_state_bytes(model, weights, folder / WEIGHTS_NAME, device=device)
    model.rsfm_card = card
    model.rsfm_weights_sha256 = sha256_bytes(weights)
    return model.eval()


def load_config(name_or_path: str | os.PathLike[str], hub: HubLike = None) -> dict[str, Any]:
    """The parsed config.json of an entry (hash-verified bytes): its architecture."""
    folder, contents = _open_entry(name_or_path, hub, verify=True)
    return _parse_config(contents[CONFIG_NAME], folder / CONFIG_NAME)


def load_untrained(name_or_path: str | os.PathLike[str], hub: HubLike = None) -> nn.Module:
    """An entry's architecture initialised from torch's current seed, without its weights (the
    random-init twin an evaluation compares a pretrained model with)."""
    where = _entry_folder(name_or_path) if _looks_like_path(name_or_path) else name_or_path
    return _build(load_config(name_or_path, hub), f"{where} ({CONFIG_NAME})").eval()


def describe(name: str, hub: HubLike = None) -> tuple[FetchedEntry, ModelCard]:
    """The verified entry (reference, folder, index record) and its typed card."""
    entry = open_hub(hub).fetch(EntryRef.parse(name))
    path = entry.path / CARD_NAME
    return entry, parse_card(_text(entry.contents[CARD_NAME], path), str(path))


def load_card(name: str | os.PathLike[str], hub: HubLike = None) -> ModelCard:
    """The typed card of ``name[@version]`` or an entry folder (hash-verified)."""
    folder, contents = _open_entry(name, hub, verify=True)
    path = folder / CARD_NAME
    return parse_card(_text(contents[CARD_NAME], path), str(path))


def verify(name: str, hub: HubLike = None) -> FetchedEntry:
    """Check every file of ``name[@version]`` against the index (raises on any mismatch)."""
    return open_hub(hub).fetch(EntryRef.parse(name))

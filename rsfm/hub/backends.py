"""Where hubs live: a local folder (default ``checkpoints/``, or ``$RSFM_HUB``), a ``file://``
URL, or a Hugging Face repository ``hf://owner/repo`` (through huggingface_hub).

Both backends share one layout: ``index.json`` at the root and one ``name@version`` folder per
entry, so a Hugging Face repo downloaded with ``snapshot_download`` is itself a local hub.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from filelock import FileLock

from rsfm.hub.entry import (
    INDEX_NAME,
    EntryExistsError,
    EntryRef,
    HubError,
    HubIndex,
    describe_files,
    umask_mode,
    verify_files,
)

HUB_ENV = "RSFM_HUB"
DEFAULT_HUB = "checkpoints"
HF_SCHEME = "hf://"
_LOCK_NAME = ".index.lock"


@dataclass(frozen=True)
class FetchedEntry:
    """A verified entry available on local disk.

    Attributes:
        ref: Exact ``name@version``.
        path: Local entry folder (every file matched the index).
        record: The entry's index record.
    """

    ref: EntryRef
    path: Path
    record: dict[str, Any]


class Hub(Protocol):
    """What every hub backend offers."""

    location: str

    def read_index(self) -> HubIndex:
        """The hub's index."""
        ...

    def fetch(self, ref: EntryRef) -> FetchedEntry:
        """Resolve ``ref`` and give a local, hash-verified copy of the entry."""
        ...

    def add_entry(
        self,
        staged: Path,
        ref: EntryRef,
        overwrite: bool = False,
        created: str | None = None,
    ) -> EntryRef:
        """Publish a staged entry folder as ``ref`` (an exact version)."""
        ...


class LocalHub:
    """A hub in a local folder.

    Entries are written into a hidden staging folder inside the hub, then renamed into place;
    ``index.json`` is rewritten via a temporary file and ``os.replace``; a file lock serialises
    concurrent pushes.

    Args:
        root: Hub folder (created on the first push).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.location = str(self.root)

    def __repr__(self) -> str:
        return f"LocalHub({self.location!r})"

    @property
    def index_path(self) -> Path:
        """``<root>/index.json``."""
        return self.root / INDEX_NAME

    def read_index(self) -> HubIndex:
        """The hub's index (empty when the hub does not exist yet)."""
        return HubIndex.load(self.index_path)

    def entry_path(self, ref: EntryRef) -> Path:
        """Folder of an exact ``name@version`` (the name is validated, so it stays inside)."""
        return self.root / ref.key

    def fetch(self, ref: EntryRef) -> FetchedEntry:
        """Resolve ``ref`` in the index and verify every file's size and sha256.

        Raises:
            EntryNotFoundError: If the index does not list it.
            IntegrityError: Naming the file that is missing or differs.
        """
        index = self.read_index()
        exact = index.resolve(ref)
        record = index.record(exact)
        path = self.entry_path(exact)
        if not path.is_dir():
            raise HubError(f"{exact.key} is listed in {self.index_path} but {path} is missing")
        verify_files(path, record, exact.key)
        return FetchedEntry(exact, path, record)

    def staging_dir(self) -> Path:
        """A fresh hidden folder inside the hub (same filesystem, so the final rename is atomic)."""
        self.root.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        umask_mode(staged, directory=True)
        return staged

    def add_entry(
        self,
        staged: Path,
        ref: EntryRef,
        overwrite: bool = False,
        created: str | None = None,
    ) -> EntryRef:
        """Move a staged folder to ``<root>/<name>@<version>`` and record its hashes.

        Args:
            staged: A complete entry folder; it is moved (renamed) into the hub.
            ref: Exact name and version.
            overwrite: Replace an existing entry of that name@version.
            created: Creation time to record (default: now).

        Raises:
            EntryExistsError: If the entry exists and ``overwrite`` is False.
        """
        files = describe_files(staged)
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.entry_path(ref)
        with FileLock(str(self.root / _LOCK_NAME)):
            index = self.read_index()
            if (ref.key in index.entries or final.exists()) and not overwrite:
                raise EntryExistsError(
                    f"{ref.key} already exists in {self.location}; pass overwrite=True "
                    "(--overwrite) to replace it, or push another version"
                )
            if staged.parent.resolve() != self.root.resolve():
                # A folder staged elsewhere: copy next to the target first so the rename is atomic.
                local = self.staging_dir()
                shutil.copytree(staged, local, dirs_exist_ok=True)
                staged = local
            retired = None
            if final.exists():
                retired = final.rename(self.root / f".retired-{ref.key}-{uuid.uuid4().hex}")
            os.rename(staged, final)
            index.add(ref, files, created)
            index.save(self.index_path)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
        return ref


class HuggingFaceHub:
    """A hub in a Hugging Face model repository (needs network access and, to push, a token).

    Downloads use ``snapshot_download`` (only ``index.json`` and the wanted entry folder), then
    the same hash verification as a local hub. A push uploads the entry folder and the updated
    ``index.json`` in one commit with ``upload_folder``, whose ``parent_commit`` makes the
    commit fail if someone else pushed in between.

    Args:
        repo_id: ``owner/repo``.
        revision: Branch, tag or commit to read (default: the main branch).
    """

    def __init__(self, repo_id: str, revision: str | None = None) -> None:
        self.repo_id = repo_id
        self.revision = revision
        self.location = f"{HF_SCHEME}{repo_id}"

    def __repr__(self) -> str:
        return f"HuggingFaceHub({self.repo_id!r})"

    def _snapshot(self, ref: EntryRef | None, revision: str | None) -> Path:
        from huggingface_hub import snapshot_download

        patterns = [INDEX_NAME] + ([f"{ref.key}/*"] if ref is not None else [])
        return Path(snapshot_download(self.repo_id, revision=revision, allow_patterns=patterns))

    def read_index(self) -> HubIndex:
        """The repository's ``index.json`` (empty if it has none)."""
        return LocalHub(self._snapshot(None, self.revision)).read_index()

    def fetch(self, ref: EntryRef) -> FetchedEntry:
        """Download ``index.json`` and the entry at one commit, then verify every file."""
        index_snapshot = self._snapshot(None, self.revision)
        commit = index_snapshot.name  # snapshot folders are named by commit sha
        exact = LocalHub(index_snapshot).read_index().resolve(ref)
        return LocalHub(self._snapshot(exact, commit)).fetch(exact)

    def add_entry(
        self,
        staged: Path,
        ref: EntryRef,
        overwrite: bool = False,
        created: str | None = None,
    ) -> EntryRef:
        """Upload a staged entry and the updated index in one commit.

        Raises:
            EntryExistsError: If the entry exists and ``overwrite`` is False.
        """
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(self.repo_id, exist_ok=True)
        parent = api.repo_info(self.repo_id).sha
        index = LocalHub(self._snapshot(None, parent)).read_index()
        if ref.key in index.entries and not overwrite:
            raise EntryExistsError(f"{ref.key} already exists in {self.location}")
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(staged, Path(tmp) / ref.key)
            index.add(ref, describe_files(staged), created)
            index.save(Path(tmp) / INDEX_NAME)
            api.upload_folder(
                repo_id=self.repo_id,
                folder_path=tmp,
                commit_message=f"rsfm hub push {ref.key}",
                parent_commit=parent,
            )
        return ref


def default_hub_location() -> str:
    """``$RSFM_HUB`` if set, else ``checkpoints`` (relative to the working directory)."""
    return os.environ.get(HUB_ENV) or DEFAULT_HUB


def open_hub(hub: str | os.PathLike[str] | Hub | None = None) -> Hub:
    """A hub backend from a path, a ``file://`` URL, ``hf://owner/repo`` or None (default).

    Raises:
        HubError: For URL schemes other than ``file`` and ``hf``.
    """
    if hub is not None and not isinstance(hub, str | os.PathLike):
        return hub  # already a backend
    location = os.fspath(hub) if hub is not None else default_hub_location()
    if location.startswith(HF_SCHEME):
        repo_id = location[len(HF_SCHEME) :].strip("/")
        if repo_id.count("/") != 1:
            raise HubError(f"{location!r}: expected hf://owner/repo")
        return HuggingFaceHub(repo_id)
    if "://" in location:
        url = urlparse(location)
        if url.scheme != "file" or url.netloc not in ("", "localhost"):
            raise HubError(
                f"unsupported hub URL {location!r}: use a path, file:///abs/path or hf://owner/repo"
            )
        return LocalHub(unquote(url.path))
    return LocalHub(location)


HubLike = str | os.PathLike[str] | Hub | None


def list_models(hub: HubLike = None) -> list[dict[str, Any]]:
    """Entries of a hub, by name then semantic version.

    Returns:
        Dicts with ``name``, ``version``, ``latest`` (bool), ``created``, ``size`` (bytes).
    """
    index = open_hub(hub).read_index()
    rows = []
    for model_name in sorted(index.latest):
        for version in index.versions(model_name):
            record = index.entries[f"{model_name}@{version}"]
            rows.append(
                {
                    "name": model_name,
                    "version": version,
                    "latest": index.latest[model_name] == version,
                    "created": record.get("created"),
                    "size": record.get("size"),
                }
            )
    return rows

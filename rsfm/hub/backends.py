"""Where hubs live: a local folder, a ``file://`` URL, or a Hugging Face repository
``hf://owner/repo`` (through huggingface_hub).

Both backends share one layout: ``index.json`` at the root and one ``name@version`` folder per
entry, so a Hugging Face repo downloaded with ``snapshot_download`` is itself a local hub.

Without a hub (``hub=None``, no ``--hub``) the default is a :class:`SearchHub`: pushes and pulls
write into the *user hub* (``$RSFM_HUB``, else ``$XDG_CACHE_HOME/rsfm/hub``, else
``~/.cache/rsfm/hub``), and lookups search the user hub first, then the models shipped
read-only in the repository's ``checkpoints/`` (see :func:`shipped_hubs`).
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from filelock import FileLock

from rsfm.hub.entry import (
    INDEX_NAME,
    EntryExistsError,
    EntryNotFoundError,
    EntryRef,
    HubError,
    HubIndex,
    describe_files,
    umask_mode,
    verify_files,
)

HUB_ENV = "RSFM_HUB"
SHIPPED_HUB = "checkpoints"  # the read-only hub of models shipped with the repository
DEFAULT_HUB = SHIPPED_HUB  # the former name
HF_SCHEME = "hf://"
_LOCK_NAME = ".index.lock"
# Hidden folders a local hub writes: an entry being staged, an entry being replaced.
_STAGING_PREFIX = ".staging-"
_RETIRED_PREFIX = ".retired-"
# A staging folder of a live process on this host is kept; one of a dead process is stale.
# Where the owner cannot be checked (another host sharing the hub, an older rsfm's unnamed
# folder) a folder is stale once nothing in it changed for this long; on this host, after
# STALE_SAME_HOST_S even if the pid is alive again (a reused pid).
STALE_AFTER_S = 3600.0
STALE_SAME_HOST_S = 86400.0
DEFAULT_HUB_HELP = (
    "hub folder, file:// URL or hf://owner/repo (default: push and pull write into $RSFM_HUB, "
    "else ~/.cache/rsfm/hub; lookups search it, then the models shipped in the repository's "
    "checkpoints/)"
)


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
    contents: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)
    """The verified bytes of every file (``{file name: bytes}``), read once: parse these."""


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


def _host() -> str:
    """This host's name, reduced to characters that are safe in a folder name."""
    name = socket.gethostname() or "host"
    return "".join(c if c.isalnum() or c in ".-" else "_" for c in name)[:64]


def _owner_tag() -> str:
    """``<host>+<pid>+``: who made a hidden folder (read back by :func:`_owner`)."""
    return f"{_host()}+{os.getpid()}+"


def _owner(folder_name: str) -> tuple[str, int] | None:
    """``(host, pid)`` of a hidden folder named with :func:`_owner_tag`, None for others."""
    for prefix in (_STAGING_PREFIX, _RETIRED_PREFIX):
        if folder_name.startswith(prefix):
            parts = folder_name[len(prefix) :].split("+")
            if len(parts) >= 3 and parts[1].isdigit():
                return parts[0], int(parts[1])
    return None


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's process) or cannot tell: keep it
    return True


def _last_change(folder: Path) -> float:
    """Newest mtime of a folder and the entries directly in it (a file being written counts)."""
    newest = folder.lstat().st_mtime
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                newest = max(newest, entry.stat(follow_symlinks=False).st_mtime)
            except OSError:
                continue
    return newest


def is_stale(folder: Path, now: float | None = None) -> bool:
    """Whether a hidden ``.staging-*`` / ``.retired-*`` folder of a hub is left over.

    A folder named by this rsfm carries its host and pid: on this host it is stale once that
    process is gone (or after :data:`STALE_SAME_HOST_S` untouched, for a reused pid). Otherwise
    (another host sharing the hub, a folder of an older rsfm) it is stale once nothing in it
    changed for :data:`STALE_AFTER_S`.
    """
    now = time.time() if now is None else now
    try:
        age = now - _last_change(folder)
    except OSError:
        return False  # gone already, or unreadable: leave it
    owner = _owner(folder.name)
    if owner is not None and owner[0] == _host():
        return not _pid_alive(owner[1]) or age > STALE_SAME_HOST_S
    return age > STALE_AFTER_S


def clean_stale(root: Path) -> list[Path]:
    """Remove the stale ``.staging-*`` / ``.retired-*`` folders of a local hub (see
    :func:`is_stale`) that killed pushes left behind; returns those removed. Links are never
    followed (a link with such a name is left alone)."""
    removed = []
    try:
        children = list(root.iterdir())
    except OSError:
        return removed
    for child in children:
        if not child.name.startswith((_STAGING_PREFIX, _RETIRED_PREFIX)):
            continue
        if child.is_symlink() or not child.is_dir() or not is_stale(child):
            continue
        shutil.rmtree(child, ignore_errors=True)
        if not child.exists():
            removed.append(child)
    return removed


class LocalHub:
    """A hub in a local folder.

    Entries are written into a hidden staging folder inside the hub, then renamed into place;
    ``index.json`` is rewritten via a temporary file and ``os.replace``; a file lock serialises
    concurrent pushes. Staging folders left by killed pushes are removed at the next push or
    pull (:func:`clean_stale`). Entry folders and files must be regular, not symbolic links.

    Args:
        root: Hub folder (created on the first push).
        links_within: Accept entry files that are symbolic links into this folder (a Hugging
            Face cache's blobs); None (the default) refuses every link.
    """

    def __init__(self, root: str | os.PathLike[str], links_within: Path | None = None) -> None:
        self.root = Path(root).expanduser()
        self.location = str(self.root)
        self.links_within = links_within

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
        if not path.is_dir() and not path.is_symlink():
            raise HubError(f"{exact.key} is listed in {self.index_path} but {path} is missing")
        contents = verify_files(path, record, exact.key, links_within=self.links_within)
        return FetchedEntry(exact, path, record, contents)

    def staging_dir(self) -> Path:
        """A fresh hidden folder inside the hub (same filesystem, so the final rename is atomic),
        named with this host and pid; stale ones of killed pushes are removed first."""
        self.root.mkdir(parents=True, exist_ok=True)
        clean_stale(self.root)
        staged = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX + _owner_tag(), dir=self.root))
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
                hidden = f"{_RETIRED_PREFIX}{_owner_tag()}{ref.key}-{uuid.uuid4().hex}"
                retired = final.rename(self.root / hidden)
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
        snapshot = self._snapshot(exact, commit)
        # huggingface_hub links snapshot files to its blob store: links into the repository's
        # own cache folder (snapshots/<commit>/.. /..) are its layout, any other is refused.
        return LocalHub(snapshot, links_within=snapshot.parent.parent).fetch(exact)

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


def user_hub_location() -> str:
    """The user hub, where pushes and pulls without a hub write: ``$RSFM_HUB`` if set, else
    ``$XDG_CACHE_HOME/rsfm/hub`` (an absolute ``XDG_CACHE_HOME`` only), else
    ``~/.cache/rsfm/hub``."""
    env = os.environ.get(HUB_ENV)
    if env:
        return env
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache) if cache and os.path.isabs(cache) else Path.home() / ".cache"
    return str(base / "rsfm" / "hub")


def default_hub_location() -> str:
    """Where a push without a hub writes (:func:`user_hub_location`)."""
    return user_hub_location()


def _repo_root() -> Path:
    """The checkout this package runs from (``rsfm/hub/backends.py`` -> ``<root>``)."""
    return Path(__file__).resolve().parents[2]


def shipped_hubs() -> list[Path]:
    """The read-only hubs of shipped models that lookups search after the user hub.

    The ``checkpoints/`` folder of the repository this package runs from (found from the
    package's location, so from any working directory), then ``./checkpoints`` of the working
    directory when it is another hub (e.g. a checkout beside an installed rsfm). A folder
    counts only when it holds an ``index.json``.
    """
    found: list[Path] = []
    for candidate in (_repo_root() / SHIPPED_HUB, Path.cwd() / SHIPPED_HUB):
        if (candidate / INDEX_NAME).is_file() and all(
            not os.path.samefile(candidate, seen) for seen in found
        ):
            found.append(candidate)
    return found


class SearchHub:
    """The default hub: writes go to the user hub; lookups search it, then the shipped hubs.

    An entry's ``name@version`` found in several hubs is taken from the first (the user hub
    shadows a shipped entry); a bare name resolves to its latest version over all of them.

    Args:
        user: Where pushes and pulls write.
        shipped: Read-only hubs searched after it (entries already there are not pushed again
            without ``overwrite``).
    """

    def __init__(self, user: LocalHub, shipped: Sequence[LocalHub] = ()) -> None:
        self.user = user
        self.hubs: list[LocalHub] = [user]
        for hub in shipped:
            if not any(_same_folder(hub.root, seen.root) for seen in self.hubs):
                self.hubs.append(hub)
        self.location = user.location

    def __repr__(self) -> str:
        return f"SearchHub({[hub.location for hub in self.hubs]!r})"

    @property
    def searched(self) -> str:
        """The hubs searched, in order, for messages."""
        return " then ".join(hub.location for hub in self.hubs)

    def _indexes(self) -> list[tuple[LocalHub, HubIndex]]:
        return [(hub, hub.read_index()) for hub in self.hubs]

    @staticmethod
    def _merge(indexes: list[tuple[LocalHub, HubIndex]]) -> HubIndex:
        entries: dict[str, dict[str, Any]] = {}
        for _, index in indexes:
            for key, record in index.entries.items():
                entries.setdefault(key, record)
        merged = HubIndex(entries=entries)
        merged._refresh_latest()
        return merged

    def read_index(self) -> HubIndex:
        """The entries of every hub searched (the first hub's record of a key wins)."""
        return self._merge(self._indexes())

    def fetch(self, ref: EntryRef) -> FetchedEntry:
        """Resolve ``ref`` over every hub searched, then fetch it from the first that lists it.

        Raises:
            EntryNotFoundError: Naming the hubs searched.
        """
        indexes = self._indexes()
        try:
            exact = self._merge(indexes).resolve(ref)
        except EntryNotFoundError as err:
            raise EntryNotFoundError(f"{err} (searched {self.searched})") from None
        hub = next(hub for hub, index in indexes if exact.key in index.entries)
        return hub.fetch(exact)

    def staging_dir(self) -> Path:
        """A staging folder in the user hub."""
        return self.user.staging_dir()

    def add_entry(
        self,
        staged: Path,
        ref: EntryRef,
        overwrite: bool = False,
        created: str | None = None,
    ) -> EntryRef:
        """Publish into the user hub; a ``name@version`` that a shipped hub already holds is
        refused unless ``overwrite`` (the user hub's copy then shadows it; the shipped one is
        never written).

        Raises:
            EntryExistsError: If the entry exists in any hub searched and ``overwrite`` is False.
        """
        if not overwrite:
            for hub in self.hubs[1:]:
                if ref.key in hub.read_index().entries:
                    raise EntryExistsError(
                        f"{ref.key} already exists in {hub.location} (shipped, read-only); "
                        "push another version, or pass overwrite=True (--overwrite) to shadow "
                        f"it in {self.user.location}"
                    )
        return self.user.add_entry(staged, ref, overwrite, created)


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def default_hub() -> SearchHub:
    """The hub of ``hub=None``: the user hub, then the shipped hubs (:class:`SearchHub`)."""
    return SearchHub(LocalHub(user_hub_location()), [LocalHub(p) for p in shipped_hubs()])


def open_hub(hub: str | os.PathLike[str] | Hub | None = None) -> Hub:
    """A hub backend from a path, a ``file://`` URL, ``hf://owner/repo``, or None (the default
    :class:`SearchHub`: user hub, then shipped hubs). An explicit location is exactly one hub.

    Raises:
        HubError: For URL schemes other than ``file`` and ``hf``.
    """
    if hub is None:
        return default_hub()
    if not isinstance(hub, str | os.PathLike):
        return hub  # already a backend
    location = os.fspath(hub)
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

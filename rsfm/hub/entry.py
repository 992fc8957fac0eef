"""Hub entries: names, versions, file hashes and the ``index.json`` that lists them.

An entry is the folder ``<hub>/<name>@<version>/`` holding ``model.safetensors``,
``config.json`` and ``card.md``. ``<hub>/index.json`` records, for every entry, the sha256 and
size of each file and when the entry was created, plus the latest version of every name::

    {"format_version": 1,
     "entries": {"smarties_tiny@1.0": {"name": "smarties_tiny", "version": "1.0",
                                       "created": "2025-01-01T00:00:00Z", "size": 1234,
                                       "files": {"model.safetensors": {"sha256": "...",
                                                                       "size": 1000}, ...}}},
     "latest": {"smarties_tiny": "1.0"}}
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hf_constants
from packaging.version import InvalidVersion, Version

# The file names of huggingface_hub's ModelHubMixin, so HF tools read an entry folder as is.
WEIGHTS_NAME = hf_constants.SAFETENSORS_SINGLE_FILE  # "model.safetensors"
CONFIG_NAME = hf_constants.CONFIG_NAME  # "config.json"
CARD_NAME = "card.md"
INDEX_NAME = "index.json"
ENTRY_FILES = (WEIGHTS_NAME, CONFIG_NAME, CARD_NAME)
FORMAT_VERSION = 1
DEFAULT_VERSION = "1.0"

_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAX_NAME_LENGTH = 128


def umask_mode(path: Path, directory: bool = False) -> None:
    """Give a file made by ``mkstemp``/``mkdtemp`` (0600/0700) the user's usual umask mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


class HubError(Exception):
    """Base class of every model-hub error."""


class InvalidNameError(HubError, ValueError):
    """A model name, version or file name that could escape the hub folder or is malformed."""


class EntryNotFoundError(HubError, LookupError):
    """No such name / version in the hub's index."""


class EntryExistsError(HubError, FileExistsError):
    """Pushing a name@version that already exists (without ``overwrite=True``)."""


class IntegrityError(HubError):
    """A file whose sha256 or size differs from the index, or that is missing."""


def validate_name(name: str, what: str = "model name") -> str:
    """Check a name: ``[A-Za-z0-9][A-Za-z0-9._-]*``, no ``..``, at most 128 characters.

    Raises:
        InvalidNameError: For empty names, slashes, ``..``, absolute paths, other characters.
    """
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"{what} must be a non-empty string, got {name!r}")
    if len(name) > _MAX_NAME_LENGTH or ".." in name or not _NAME_PATTERN.fullmatch(name):
        raise InvalidNameError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_', '-' (starting with a "
            f"letter or digit, no '..', no slashes, at most {_MAX_NAME_LENGTH} characters)"
        )
    return name


def normalize_version(version: str) -> str:
    """A version string in canonical PEP 440 form (``"v1.02"`` -> ``"1.2"``).

    Raises:
        InvalidNameError: If the version does not parse or would be an unsafe folder name.
    """
    try:
        canonical = str(Version(str(version)))
    except InvalidVersion:
        raise InvalidNameError(
            f"invalid version {version!r}: use numbers separated by dots, e.g. 1.0 or 2.3.1"
        ) from None
    return validate_name(canonical, "version")


def version_key(version: str) -> Version:
    """Sort key giving semantic ordering (``1.10`` after ``1.9``)."""
    return Version(version)


def next_version(versions: list[str]) -> str:
    """``1.0`` for a new name, else the latest version with its last number increased."""
    if not versions:
        return DEFAULT_VERSION
    release = list(version_key(max(versions, key=version_key)).release)
    release[-1] += 1
    return ".".join(str(part) for part in release)


@dataclass(frozen=True)
class EntryRef:
    """A reference ``name`` or ``name@version`` (version None = the latest).

    Attributes:
        name: Validated model name.
        version: Canonical version, or None for the latest.
    """

    name: str
    version: str | None = None

    def __post_init__(self) -> None:
        validate_name(self.name)
        if self.version is not None:
            object.__setattr__(self, "version", normalize_version(self.version))

    @classmethod
    def parse(cls, ref: str) -> EntryRef:
        """Parse ``"name"`` or ``"name@1.2"``.

        Raises:
            InvalidNameError: If the name or version is invalid.
        """
        if not isinstance(ref, str):
            raise InvalidNameError(f"model reference must be a string, got {ref!r}")
        name, sep, version = ref.partition("@")
        if sep and not version:
            raise InvalidNameError(f"invalid reference {ref!r}: empty version after '@'")
        return cls(name, version if sep else None)

    @property
    def key(self) -> str:
        """The entry folder name ``name@version`` (requires a version)."""
        if self.version is None:
            raise ValueError(f"{self.name!r} has no version; resolve it against an index first")
        return f"{self.name}@{self.version}"

    def __str__(self) -> str:
        return self.name if self.version is None else self.key


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of bytes already read (the bytes that are then parsed or loaded)."""
    return hashlib.sha256(data).hexdigest()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FD = os.open in os.supports_dir_fd and os.stat in os.supports_dir_fd


def _link_error(what: Path, key: str) -> IntegrityError:
    try:
        target = f" -> {os.readlink(what)}"
    except OSError:
        target = ""
    return IntegrityError(
        f"{key}: {what}{target} is a symbolic link; hub entries hold regular files and folders "
        "only (copy the files in instead of linking them)"
    )


class EntryReader:
    """Reads the files of one entry folder as regular files, never through a symbolic link.

    The folder and every file are checked with ``lstat`` and opened with ``O_NOFOLLOW``
    (relative to the open folder, where the OS allows it), so a link swapped in after the check
    fails to open instead of being followed. The bytes read are the bytes the caller hashes,
    parses and loads: nothing is reopened after a check.

    Args:
        entry_dir: The entry folder.
        key: ``name@version`` (or the folder) for messages.
        links_within: Allow symbolic links whose target lies inside this folder (the blob store
            of a Hugging Face download cache); None refuses every link.
    """

    def __init__(self, entry_dir: Path, key: str, links_within: Path | None = None) -> None:
        self.entry_dir = Path(entry_dir)
        self.key = key
        self.links_within = links_within.resolve() if links_within is not None else None

    def _allowed_link(self, path: Path) -> bool:
        return self.links_within is not None and _inside(path.resolve(), self.links_within)

    def __enter__(self) -> EntryReader:
        self._dir_fd: int | None = None
        try:
            info = os.lstat(self.entry_dir)
        except FileNotFoundError:
            raise HubError(f"{self.key}: entry folder {self.entry_dir} is missing") from None
        if stat.S_ISLNK(info.st_mode) and not self._allowed_link(self.entry_dir):
            raise _link_error(self.entry_dir, self.key)
        if _DIR_FD and not stat.S_ISLNK(info.st_mode):
            flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW
            try:
                self._dir_fd = os.open(self.entry_dir, flags)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise _link_error(self.entry_dir, self.key) from None
                raise HubError(f"{self.key}: cannot open {self.entry_dir}: {err}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _lstat(self, name: str) -> os.stat_result:
        if self._dir_fd is not None:
            return os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)
        return os.lstat(self.entry_dir / name)

    def read(self, name: str, expected_size: int | None = None) -> bytes:
        """The bytes of one entry file.

        Raises:
            IntegrityError: If it is missing or has another size than ``expected_size``.
            HubError: If it is a symbolic link (or not a regular file).
        """
        validate_name(name, "file name")
        path = self.entry_dir / name
        try:
            info = self._lstat(name)
        except FileNotFoundError:
            raise IntegrityError(
                f"{self.key}: file {name} is missing from {self.entry_dir}"
            ) from None
        link = stat.S_ISLNK(info.st_mode)
        if link and not self._allowed_link(path):
            raise _link_error(path, self.key)
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | (0 if link else _NOFOLLOW)
        try:
            if self._dir_fd is not None:
                fd = os.open(name, flags, dir_fd=self._dir_fd)
            else:
                fd = os.open(path, flags)
        except OSError as err:
            if err.errno == errno.ELOOP:  # replaced by a link after the check
                raise _link_error(path, self.key) from None
            raise HubError(f"{self.key}: cannot open {path}: {err}") from None
        with os.fdopen(fd, "rb") as handle:
            opened = os.fstat(handle.fileno())
            if not stat.S_ISREG(opened.st_mode):
                raise HubError(f"{self.key}: {path} is not a regular file")
            if expected_size is not None and opened.st_size != expected_size:
                raise IntegrityError(
                    f"{self.key}: {name} has {opened.st_size} bytes, the index records "
                    f"{expected_size} ({path}); the file was changed or truncated"
                )
            data = handle.read()
        if expected_size is not None and len(data) != expected_size:
            raise IntegrityError(
                f"{self.key}: {name} has {len(data)} bytes, the index records {expected_size} "
                f"({path}); the file was changed or truncated"
            )
        return data

    def names(self) -> list[str]:
        """Names in the folder (links included, so that they can be refused)."""
        if self._dir_fd is not None:
            return sorted(os.listdir(self._dir_fd))
        return sorted(os.listdir(self.entry_dir))


def describe_files(entry_dir: Path) -> dict[str, dict[str, Any]]:
    """``{file name: {"sha256", "size"}}`` for every file of an entry folder.

    Raises:
        HubError: If the folder holds a sub-folder or a symbolic link, or misses one of the
            entry files.
    """
    files: dict[str, dict[str, Any]] = {}
    with EntryReader(entry_dir, str(entry_dir)) as reader:
        for name in reader.names():
            info = reader._lstat(name)
            if stat.S_ISLNK(info.st_mode):
                raise _link_error(entry_dir / name, str(entry_dir))
            if not stat.S_ISREG(info.st_mode):
                raise HubError(f"entry folder {entry_dir} holds {name!r}, which is not a file")
            data = reader.read(name)
            files[name] = {"sha256": sha256_bytes(data), "size": len(data)}
    missing = [name for name in ENTRY_FILES if name not in files]
    if missing:
        raise HubError(f"entry folder {entry_dir} lacks {missing}")
    return files


def verify_files(
    entry_dir: Path, record: dict[str, Any], key: str, *, links_within: Path | None = None
) -> dict[str, bytes]:
    """Read every file listed for an entry once and check its size and sha256.

    Returns:
        ``{file name: bytes}``: the verified bytes, for the caller to parse or load (nothing
        is reopened after the check).

    Raises:
        IntegrityError: Naming the first file that is missing, has another size or hash, or
            an entry file that the index does not list.
        HubError: If the folder or a file is a symbolic link (see :class:`EntryReader`).
    """
    files = record.get("files") or {}
    unlisted = [name for name in ENTRY_FILES if name not in files]
    if unlisted:
        raise IntegrityError(f"{key}: the index lists no hash for {unlisted}; refusing to load")
    contents: dict[str, bytes] = {}
    with EntryReader(entry_dir, key, links_within) as reader:
        for name, expected in files.items():
            size = expected.get("size")
            data = reader.read(name, int(size) if size is not None else None)
            digest = sha256_bytes(data)
            if digest != expected.get("sha256"):
                raise IntegrityError(
                    f"{key}: sha256 mismatch for {name} ({entry_dir / name}): index "
                    f"{expected.get('sha256')}, file {digest}; the file was changed or corrupted"
                )
            contents[name] = data
    return contents


def utc_now() -> str:
    """Current UTC time, ISO 8601 with a ``Z`` suffix, second precision."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class HubIndex:
    """In-memory ``index.json``.

    Attributes:
        entries: ``{name@version: {"name", "version", "created", "size", "files"}}``.
        latest: ``{name: latest version}`` (semantic ordering).
    """

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> HubIndex:
        """Read an index file; a missing file is an empty index.

        Raises:
            HubError: If the file is not a valid index.
        """
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            entries = dict(data.get("entries", {}))
        except (ValueError, AttributeError, TypeError) as err:
            raise HubError(f"{path} is not a valid hub index: {err}") from None
        if data.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise HubError(
                f"{path} has index format {data['format_version']}; this rsfm reads up to "
                f"{FORMAT_VERSION}: upgrade rsfm"
            )
        for key, record in entries.items():
            try:  # names from a file are checked like names from a user
                ref = EntryRef(record["name"], record["version"])
            except (KeyError, TypeError):
                raise HubError(f"{path}: entry {key!r} lacks a name or version") from None
            except InvalidNameError as err:
                raise InvalidNameError(f"{path}: entry {key!r}: {err}") from None
            if ref.key != key:
                raise HubError(f"{path}: entry {key!r} records {ref.key!r}")
        index = cls(entries=entries)
        index._refresh_latest()
        return index

    def save(self, path: Path) -> None:
        """Write the index atomically (temporary file in the same folder, then replace)."""
        self._refresh_latest()
        data = {"format_version": FORMAT_VERSION, "entries": self.entries, "latest": self.latest}
        fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_NAME}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            umask_mode(Path(tmp))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _refresh_latest(self) -> None:
        by_name: dict[str, list[str]] = {}
        for record in self.entries.values():
            by_name.setdefault(record["name"], []).append(record["version"])
        self.latest = {name: max(v, key=version_key) for name, v in sorted(by_name.items())}

    def versions(self, name: str) -> list[str]:
        """Versions of a name, oldest first (semantic ordering)."""
        found = [r["version"] for r in self.entries.values() if r["name"] == name]
        return sorted(found, key=version_key)

    def add(
        self, ref: EntryRef, files: dict[str, dict[str, Any]], created: str | None = None
    ) -> dict[str, Any]:
        """Record an entry (replacing any record of the same key); returns the record."""
        record = {
            "name": ref.name,
            "version": ref.version,
            "created": created or utc_now(),
            "size": sum(int(f["size"]) for f in files.values()),
            "files": files,
        }
        self.entries[ref.key] = record
        self._refresh_latest()
        return record

    def resolve(self, ref: EntryRef) -> EntryRef:
        """The exact ``name@version`` of a reference (``name`` alone: the latest).

        Raises:
            EntryNotFoundError: Listing the known versions or names.
        """
        versions = self.versions(ref.name)
        if not versions:
            known = sorted(self.latest) or "none"
            raise EntryNotFoundError(f"no model named {ref.name!r} in the index; models: {known}")
        if ref.version is None:
            return EntryRef(ref.name, self.latest[ref.name])
        if ref.key not in self.entries:
            raise EntryNotFoundError(
                f"{ref.key} is not in the index; versions of {ref.name}: {versions}"
            )
        return ref

    def record(self, ref: EntryRef) -> dict[str, Any]:
        """The index record of an exact ``name@version``.

        Raises:
            EntryNotFoundError: If the index does not list it.
        """
        try:
            return self.entries[ref.key]
        except KeyError:
            raise EntryNotFoundError(
                f"{ref.key} is not listed in the hub index; refusing to load an entry whose "
                "files have no recorded hashes"
            ) from None

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
import hashlib
import json
import os
import re
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


def describe_files(entry_dir: Path) -> dict[str, dict[str, Any]]:
    """``{file name: {"sha256", "size"}}`` for every file of an entry folder.

    Raises:
        HubError: If the folder holds a sub-folder or misses one of the entry files.
    """
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(entry_dir.iterdir()):
        if not path.is_file():
            raise HubError(f"entry folder {entry_dir} holds {path.name!r}, which is not a file")
        validate_name(path.name, "file name")
        files[path.name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    missing = [name for name in ENTRY_FILES if name not in files]
    if missing:
        raise HubError(f"entry folder {entry_dir} lacks {missing}")
    return files


def verify_files(entry_dir: Path, record: dict[str, Any], key: str) -> None:
    """Check every file listed for an entry against its recorded size and sha256.

    Raises:
        IntegrityError: Naming the first file that is missing, has another size or hash, or
            an entry file that the index does not list.
    """
    files = record.get("files") or {}
    unlisted = [name for name in ENTRY_FILES if name not in files]
    if unlisted:
        raise IntegrityError(f"{key}: the index lists no hash for {unlisted}; refusing to load")
    for name, expected in files.items():
        validate_name(name, "file name")
        path = entry_dir / name
        if not path.is_file():
            raise IntegrityError(f"{key}: file {name} is missing from {entry_dir}")
        size = path.stat().st_size
        if size != expected.get("size", size):
            raise IntegrityError(
                f"{key}: {name} has {size} bytes, the index records {expected['size']} "
                f"({path}); the file was changed or truncated"
            )
        digest = sha256_file(path)
        if digest != expected.get("sha256"):
            raise IntegrityError(
                f"{key}: sha256 mismatch for {name} ({path}): index {expected.get('sha256')}, "
                f"file {digest}; the file was changed or corrupted"
            )


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

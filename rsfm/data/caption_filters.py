"""Caption cleaning: word-count bounds, duplicate removal and an English-language filter."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol, TypeVar


class CaptionedRow(Protocol):
    """What a filter reads of a record (a dataclass such as ``CaptionRecord``)."""

    image: Path
    captions: tuple[str, ...]
    trusted: bool


Row = TypeVar("Row", bound=CaptionedRow)

_WORD = re.compile(r"[^\W_]+(?:['-][^\W_]+)*", re.UNICODE)
# A small closed-class English word list: a caption with none of them and few ASCII letters is
# not English. Hand-written: no language-identification package is a dependency of rsfm.
_ENGLISH_WORDS = frozenset(
    "a an the of and or with in on at by to from near next some many few is are there this "
    "that its it mostly mainly large small dense sparse area areas field fields river lake "
    "forest water road building buildings green".split()
)


def looks_english(text: str) -> bool:
    """Heuristic English test: mostly Latin letters and at least one common English word."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return False
    latin = sum("LATIN" in unicodedata.name(c, "") for c in letters) / len(letters)
    words = {w.lower() for w in _WORD.findall(text)}
    return latin >= 0.9 and bool(words & _ENGLISH_WORDS)


def _normalised(text: str) -> str:
    return " ".join(text.lower().split())


@dataclass
class CaptionFilter:
    """Caption cleaning: word-count bounds, duplicates and a language filter.

    Captions are judged one by one; a record keeps its surviving captions and is dropped when
    none survive. Trusted records pass unchanged. Reasons counted: ``too_short``, ``too_long``,
    ``duplicate`` (same normalised caption twice for one image, or an image listed twice with
    the same captions), ``language``, and ``no_caption_left`` (records dropped).

    Args:
        min_words: Fewest words a caption may have.
        max_words: Most words (77 = CLIP's context length in tokens, an upper bound on words).
        dedupe: Drop duplicate captions of an image and repeated (image, captions) rows.
        languages: Allowed languages (only ``"en"`` is detected), or None for no filter.
    """

    min_words: int = 3
    max_words: int = 77
    dedupe: bool = True
    languages: tuple[str, ...] | None = ("en",)

    def __post_init__(self) -> None:
        if self.languages is not None:
            self.languages = tuple(self.languages)
            unsupported = sorted(set(self.languages) - {"en"})
            if unsupported:
                raise ValueError(f"language filter supports only 'en', got {unsupported}")
        if not 0 <= self.min_words <= self.max_words:
            raise ValueError(f"need 0 <= min_words <= max_words, got {self}")

    def _reason(self, caption: str) -> str | None:
        words = len(_WORD.findall(caption))
        if words < self.min_words:
            return "too_short"
        if words > self.max_words:
            return "too_long"
        if self.languages is not None and not looks_english(caption):
            return "language"
        return None

    def __call__(self, records: Sequence[Row]) -> tuple[list[Row], dict[str, int]]:
        """Filter records; returns ``(kept, {reason: count})``."""
        reasons: dict[str, int] = {}
        kept: list[Row] = []
        seen_rows: set[tuple[str, tuple[str, ...]]] = set()

        def drop(reason: str) -> None:
            reasons[reason] = reasons.get(reason, 0) + 1

        for record in records:
            if record.trusted:
                kept.append(record)
                continue
            captions, seen = [], set()
            for caption in record.captions:
                reason = self._reason(caption)
                key = _normalised(caption)
                if reason is None and self.dedupe and key in seen:
                    reason = "duplicate"
                if reason is not None:
                    drop(reason)
                    continue
                seen.add(key)
                captions.append(caption.strip())
            if not captions:
                drop("no_caption_left")
                continue
            row_key = (str(record.image), tuple(sorted(_normalised(c) for c in captions)))
            if self.dedupe and row_key in seen_rows:
                drop("duplicate")
                continue
            seen_rows.add(row_key)
            kept.append(replace(record, captions=tuple(captions)))
        return kept, reasons

"""What a session's names are, and the rules every namer's output follows.

A title is one line of at most TITLE_MAX characters with no control characters. A branch is what
`git check-ref-format --branch` accepts, at most BRANCH_MAX characters; generated branches are
lower-case ASCII words joined by hyphens (`fix-login-timeout`), under the configured prefix.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

TITLE_MAX = 80
BRANCH_MAX = 100
MESSAGE_TEXT_MAX = 4000
_SLUG_WORDS = 6
_SLUG_MAX = 50

_WHITESPACE = re.compile(r"\s+")
# Control characters (C0, DEL, C1), line and paragraph separators, bidirectional embeddings,
# overrides and isolates (they make a title display as something it is not), and lone
# surrogates (not encodable as UTF-8).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_NON_SLUG = re.compile(r"[^a-z0-9]+")
# Characters git forbids anywhere in a ref name.
_GIT_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
# Keys whose values are identifiers or structure (`{"role": "user", "content": "…"}`), not text
# a person wrote; skipping them keeps "user" from becoming a title and ids out of the prompt.
_NOT_TEXT_KEYS = frozenset(
    {"id", "uuid", "type", "role", "model", "media_type", "signature", "data", "tool_use_id"}
)


@dataclass(frozen=True, slots=True)
class Names:
    """A title and a branch for a new session, and which namer made them. `fallback` says why
    a namer gave the local names instead of its own (for the metrics: not part of the names)."""

    title: str
    branch: str
    namer: Literal["anthropic", "local"]
    fallback: str | None = field(default=None, compare=False)


class Namer(Protocol):
    async def name(self, repo: str, target_branch: str, messages: Any) -> Names:
        """Names for a new session. Never fails: a namer that cannot answer falls back."""
        ...


def message_text(messages: Any, limit: int = MESSAGE_TEXT_MAX) -> str:
    """The strings found inside `messages` (a JSON value), in document order, one per line and
    cut at `limit` characters. Values of identifier keys such as "role" or "id" are skipped."""
    parts: list[str] = []
    size = 0
    for text in _strings(messages):
        text = text.strip()
        if not text:
            continue
        parts.append(text)
        size += len(text) + 1
        if size >= limit:
            break
    return "\n".join(parts)[:limit]


def _strings(value: Any) -> Iterator[str]:
    # Depth-first without recursion: how deep a document nests is the client's choice.
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.append(v for k, v in item.items() if k not in _NOT_TEXT_KEYS)
        elif isinstance(item, list):
            stack.append(iter(item))


_END = object()


def clean_title(raw: str) -> str:
    """One line, control characters removed, whitespace collapsed, at most TITLE_MAX characters
    (cut at a word boundary when one is near). Empty when nothing visible is left."""
    text = _WHITESPACE.sub(" ", raw)
    text = _WHITESPACE.sub(" ", _CONTROL.sub("", text)).strip()
    if not _has_visible(text):
        return ""
    if len(text) <= TITLE_MAX:
        return text
    cut = text[: TITLE_MAX - 1]
    space = cut.rfind(" ")
    if space >= TITLE_MAX // 2:
        cut = cut[:space]
    return cut.rstrip(" .,;:-") + "…"


def is_valid_title(title: str) -> bool:
    """At most TITLE_MAX characters, no control characters (so one line), not only whitespace.
    (`clean_title` is stricter: what it returns also has something visible.)"""
    return bool(title.strip()) and len(title) <= TITLE_MAX and not _CONTROL.search(title)


def _has_visible(text: str) -> bool:
    # Letters, digits, punctuation and symbols are visible; spaces and format characters
    # (zero-width space and the like) are not.
    return any(unicodedata.category(char)[0] in "LMNPS" for char in text)


def is_valid_branch(name: str) -> bool:
    """What `git check-ref-format --branch` accepts, plus our length limit (and no lone
    surrogates, which cannot be written as UTF-8)."""
    if not name or len(name) > BRANCH_MAX or name.startswith("-") or name in ("@", "HEAD"):
        return False
    if _GIT_FORBIDDEN.search(name) or _SURROGATE.search(name) or ".." in name or "@{" in name:
        return False
    if name.endswith((".", "/")) or name.startswith("/") or "//" in name:
        return False
    return all(not part.startswith(".") and not part.endswith(".lock") for part in name.split("/"))


def slugify(text: str, max_words: int = _SLUG_WORDS, max_length: int = _SLUG_MAX) -> str:
    """Lower-case ASCII words joined by hyphens: 'Fix the Login bug!' -> 'fix-the-login-bug'.
    Accents are dropped ('Café' -> 'cafe'); empty when `text` has no ASCII letter or digit."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    words = [w for w in _NON_SLUG.split(folded.encode("ascii", "ignore").decode()) if w]
    if not words:
        return ""
    slug = words[0][:max_length]
    for word in words[1:max_words]:
        if len(slug) + 1 + len(word) > max_length:
            break
        slug = f"{slug}-{word}"
    return slug


def with_prefix(prefix: str, slug: str) -> str:
    """`slug` under the branch prefix, the whole at most BRANCH_MAX characters."""
    room = BRANCH_MAX - len(prefix)
    return prefix + slug[:room].rstrip("-")


def with_suffix(branch: str, suffix: str | None = None) -> str:
    """`branch` with a short random suffix, for a name already taken in the repo."""
    suffix = suffix or secrets.token_hex(3)
    return branch[: BRANCH_MAX - len(suffix) - 1].rstrip("-/.") + "-" + suffix

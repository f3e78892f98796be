"""Parsed documents and their validation, kept for the queries clients repeat, within a byte
budget.

Strawberry's ParserCache and ValidationCache keep 512 query texts of any size, keyed on the text
itself: 150 distinct 1 MB documents (comments are free under MAX_TOKENS) took a server from 94
to 370 MB. Here a document is kept only when it is small, under a digest of its text, and the
least recently used ones go when the whole would pass the budget. The cache belongs to one
schema, whose limits and rules are fixed, so a document parsed or validated under one app's
limits never serves another's."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema
from strawberry.extensions import SchemaExtension

# What a parsed document holds per token, its location included: 390 to 440 bytes measured
# with tracemalloc on documents from 100 to 2,000 tokens. Its text is counted besides.
TOKEN_BYTES = 450
# The largest document kept, text and tokens: about 500 tokens, several times a page of
# sessions with all their fields and relations (40 KB). A document of 2,000 tokens takes 0.9 MB
# and is parsed again each time: one that long is rarely sent twice.
MAX_ENTRY_BYTES = 256 * 1024
# What all the kept documents may take together: some hundreds of typical queries.
BUDGET_BYTES = 16 * 1024 * 1024

Rules = tuple[type[ASTValidationRule], ...]
Validate = Callable[[GraphQLSchema, DocumentNode, Rules], list[GraphQLError]]


@dataclass
class _Entry:
    document: DocumentNode
    size: int
    errors: dict[Rules, list[GraphQLError]] = field(default_factory=dict)


def _size(query: str, document: DocumentNode) -> int:
    """An estimate of the memory `document`, parsed from `query`, holds."""
    tokens = 0
    token = document.loc.start_token if document.loc else None
    while token is not None:
        tokens += 1
        token = token.next
    return len(query) + tokens * TOKEN_BYTES


class DocumentCache:
    """Documents and their validation errors by digest of the query text, least recently used
    first out, within `budget_bytes`; none larger than `max_entry_bytes`."""

    def __init__(
        self, budget_bytes: int = BUDGET_BYTES, max_entry_bytes: int = MAX_ENTRY_BYTES
    ) -> None:
        self.budget_bytes = budget_bytes
        self.max_entry_bytes = max_entry_bytes
        self.bytes = 0
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, query: str) -> bytes | None:
        """The key of `query`, or None when it is too long to be kept."""
        if len(query) > self.max_entry_bytes:
            return None
        return hashlib.blake2b(query.encode(), digest_size=16).digest()

    def document(self, key: bytes) -> DocumentNode | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.document

    def keep(self, key: bytes, query: str, document: DocumentNode) -> None:
        """Keep `document`, parsed from `query`, if it is small enough."""
        size = _size(query, document)
        if size > self.max_entry_bytes or key in self._entries:
            return
        self._entries[key] = _Entry(document, size)
        self.bytes += size
        while self.bytes > self.budget_bytes:
            _, evicted = self._entries.popitem(last=False)
            self.bytes -= evicted.size

    def errors(self, key: bytes, rules: Rules) -> list[GraphQLError] | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.errors.get(rules)

    def validated(self, key: bytes) -> DocumentNode | None:
        """The kept document of `key` if it was validated and found valid, else None."""
        entry = self._entries.get(key)
        if entry is None or not entry.errors or any(entry.errors.values()):
            return None
        return entry.document

    def keep_errors(self, key: bytes, rules: Rules, errors: list[GraphQLError]) -> None:
        """Keep the errors of a kept document under `rules` (they refer to its nodes, whose
        size it counts)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.errors[rules] = errors


class CachedDocuments(SchemaExtension):
    """Parses through `cache`, and validates with `validate` through it; a document too long to
    be kept is parsed and validated every time."""

    def __init__(self, cache: DocumentCache, validate: Validate) -> None:
        self.cache = cache
        self.validate = validate
        self._key: bytes | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and context.graphql_document is None:
            self._key = self.cache.key(context.query)
        cached = None if self._key is None else self.cache.document(self._key)
        if cached is not None:
            context.graphql_document = cached
        yield
        # Strawberry parsed it, or reported why not.
        if self._key is not None and cached is None and context.graphql_document is not None:
            self.cache.keep(self._key, context.query or "", context.graphql_document)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        rules = context.validation_rules
        key = self._key
        errors = None if key is None else self.cache.errors(key, rules)
        if errors is None:
            errors = self.validate(context.schema._schema, context.graphql_document, rules)
            if key is not None:
                self.cache.keep_errors(key, rules, errors)
        # A list of its own: Strawberry's run may add to it. Set, it stands for the validation.
        context.pre_execution_errors = list(errors)
        yield

"""`MAX_QUERY_DEPTH`, `MAX_ALIASES`, `MAX_SELECTION_FIELDS` and `MAX_FIELDS` as validation rules.

They count as Strawberry's QueryDepthLimiter and MaxAliasesLimiter do, with the same messages,
but work out each fragment once. Strawberry's walk a fragment again at every spread, so about
a kilobyte of fragments, each spreading the next one twice, kept a worker validating for
hours; and an unknown fragment made them fail with a KeyError instead of a validation error.

The field rule bounds the work of the specification's rules, whose overlapping-fields rule
compares every pair of same-named fields: 497 `parent { id }` in one selection set, 2,000
tokens, took it 1.2 s. `validate_within_limits` runs these rules first and the specification's
only when they pass.

Each factory makes a rule class; an app makes its rules once, so that the document cache, which
keeps results per set of rules, keeps working."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    validate,
)
from graphql.language.visitor import BREAK, VisitorAction

from app.graphql.cost import QUERY_TOO_COMPLEX

# Pairs of fields at the same response path (fragments spread) that a document may hold. The
# specification's OverlappingFieldsCanBeMergedRule compares every such pair, at 2 to 3 units
# of its budget each (about 1.5 µs a unit here): `{ session { parent { id } x497 } }` has
# 246,000 pairs and took 1.2 s to validate. 2,000 pairs validate in about 10 ms; a real
# query repeats a field a few times, through fragments, and has tens.
MAX_MERGED_PAIRS = 2000

# What a fragment contributes to a count, from its selection set and the fragments' counts.
Measure = Callable[[SelectionSetNode, Callable[[str], int]], int]


class _Fragments:
    """Each fragment's measure, worked out once. A fragment in a cycle (which another rule
    reports) or an unknown one measures 0."""

    def __init__(self, context: ValidationContext, measure: Measure) -> None:
        self._definitions = {
            definition.name.value: definition.selection_set
            for definition in context.document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self._measure = measure
        self._known: dict[str, int] = {}
        self._open: set[str] = set()

    def __call__(self, name: str) -> int:
        if name in self._known:
            return self._known[name]
        selection_set = self._definitions.get(name)
        if selection_set is None or name in self._open:
            return 0
        self._open.add(name)
        try:
            value = self._measure(selection_set, self)
        finally:
            self._open.discard(name)
        self._known[name] = value
        return value


def _operations(context: ValidationContext) -> list[OperationDefinitionNode]:
    return [
        definition
        for definition in context.document.definitions
        if isinstance(definition, OperationDefinitionNode)
    ]


def _height(selection_set: SelectionSetNode, fragment: Callable[[str], int]) -> int:
    """How many levels of fields lie below `selection_set`'s own: a field's selection set is
    one level down, fragments are transparent, introspection is not counted."""
    height = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.selection_set and not selection.name.value.startswith("__"):
                height = max(height, 1 + _height(selection.selection_set, fragment))
        elif isinstance(selection, InlineFragmentNode):
            height = max(height, _height(selection.selection_set, fragment))
        elif isinstance(selection, FragmentSpreadNode):
            height = max(height, fragment(selection.name.value))
    return height


def _aliases(selection_set: SelectionSetNode, fragment: Callable[[str], int]) -> int:
    """The aliased fields in `selection_set`, a fragment's counted at every spread."""
    count = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            count += selection.alias is not None
            if selection.selection_set:
                count += _aliases(selection.selection_set, fragment)
        elif isinstance(selection, InlineFragmentNode):
            count += _aliases(selection.selection_set, fragment)
        elif isinstance(selection, FragmentSpreadNode):
            count += fragment(selection.name.value)
    return count


def _width(selection_set: SelectionSetNode, fragment: Callable[[str], int]) -> int:
    """The fields of `selection_set` itself, with those of the fragments spread into it."""
    width = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            width += 1
        elif isinstance(selection, InlineFragmentNode):
            width += _width(selection.selection_set, fragment)
        elif isinstance(selection, FragmentSpreadNode):
            width += fragment(selection.name.value)
    return width


def _fields(selection_set: SelectionSetNode, fragment: Callable[[str], int]) -> int:
    """The fields in `selection_set` at every level, a fragment's counted at every spread."""
    count = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            count += 1
            if selection.selection_set:
                count += _fields(selection.selection_set, fragment)
        elif isinstance(selection, InlineFragmentNode):
            count += _fields(selection.selection_set, fragment)
        elif isinstance(selection, FragmentSpreadNode):
            count += fragment(selection.name.value)
    return count


def _selection_sets(node: Any) -> list[SelectionSetNode]:
    """Every selection set written in the document under `node` (fragments where defined)."""
    found: list[SelectionSetNode] = []
    stack = [node.selection_set]
    while stack:
        selection_set = stack.pop()
        found.append(selection_set)
        stack += [
            s.selection_set for s in selection_set.selections if getattr(s, "selection_set", None)
        ]
    return found


# Response name -> [how many fields answer to it, what those fields select, merged].
_Merged = dict[str, list[Any]]


class _Merger:
    """The fields of an operation merged by response path, as execution merges them."""

    def __init__(self, definitions: dict[str, SelectionSetNode], fields: _Fragments) -> None:
        self._definitions = definitions
        self._fields = fields
        self._open: set[str] = set()

    def merge(self, selection_set: SelectionSetNode, into: _Merged) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                entry = into.setdefault((selection.alias or selection.name).value, [0, {}])
                entry[0] += 1
                if selection.selection_set:
                    self.merge(selection.selection_set, entry[1])
            elif isinstance(selection, InlineFragmentNode):
                self.merge(selection.selection_set, into)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                # A fragment without fields adds nothing, however often it is spread.
                if name in self._open or not self._fields(name):
                    continue
                self._open.add(name)
                try:
                    self.merge(self._definitions[name], into)
                finally:
                    self._open.discard(name)


def _pairs(merged: _Merged) -> int:
    """The pairs of fields that share a response path."""
    return sum(count * (count - 1) // 2 + _pairs(inner) for count, inner in merged.values())


def depth_rule(max_depth: int) -> type[ValidationRule]:
    """Refuses an operation whose fields nest more than `max_depth` levels deep."""

    class QueryDepthRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fragment = _Fragments(context, _height)
            for operation in _operations(context):
                if _height(operation.selection_set, fragment) > max_depth:
                    name = operation.name.value if operation.name else "anonymous"
                    context.report_error(
                        GraphQLError(
                            f"'{name}' exceeds maximum operation depth of {max_depth}", operation
                        )
                    )

    return QueryDepthRule


def alias_rule(max_aliases: int) -> type[ValidationRule]:
    """Refuses a document with more than `max_aliases` aliases, fragments counted where
    spread."""

    class MaxAliasesRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            fragment = _Fragments(context, _aliases)
            total = sum(_aliases(op.selection_set, fragment) for op in _operations(context))
            if total > max_aliases:
                context.report_error(GraphQLError(f"{total} aliases found. Allowed: {max_aliases}"))

    return MaxAliasesRule


def field_rule(max_selection_fields: int, max_fields: int) -> type[ValidationRule]:
    """Refuses a selection set of more than `max_selection_fields` fields, a document of more
    than `max_fields` (fragments counted where spread), and a document whose same-named fields
    hold more than MAX_MERGED_PAIRS pairs to compare. It bounds the work of the specification's
    rules, so it runs before them (`validate_within_limits`)."""

    class FieldCountRule(ValidationRule):
        # In `enter_document` rather than `__init__`: a recursion too deep (fragments spread
        # in a long chain) then aborts the validation, as graphql-core reports it.
        def enter_document(self, *_args: Any) -> VisitorAction:
            context = self.context
            definitions = {
                definition.name.value: definition.selection_set
                for definition in context.document.definitions
                if isinstance(definition, FragmentDefinitionNode)
            }
            widths = _Fragments(context, _width)
            widest = max(
                (
                    (_width(selection_set, widths), selection_set)
                    for definition in context.document.definitions
                    if isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode)
                    for selection_set in _selection_sets(definition)
                ),
                key=lambda found: found[0],
                default=None,
            )
            if widest is not None and widest[0] > max_selection_fields:
                self._refuse(
                    f"{widest[0]} fields found in one selection set. "
                    f"Allowed: {max_selection_fields}",
                    widest[1],
                )
                return BREAK
            fields = _Fragments(context, _fields)
            operations = _operations(context)
            total = sum(_fields(operation.selection_set, fields) for operation in operations)
            if total > max_fields:
                self._refuse(f"{total} fields found. Allowed: {max_fields}")
                return BREAK
            merger = _Merger(definitions, fields)
            for operation in operations:
                merged: _Merged = {}
                merger.merge(operation.selection_set, merged)
                pairs = _pairs(merged)
                if pairs > MAX_MERGED_PAIRS:
                    self._refuse(
                        f"{pairs} pairs of fields with the same response name found. "
                        f"Allowed: {MAX_MERGED_PAIRS}; select each field once",
                        operation,
                    )
                    return BREAK
            return BREAK

        def _refuse(self, message: str, node: Any = None) -> None:
            self.report_error(GraphQLError(message, node, extensions={"code": QUERY_TOO_COMPLEX}))

    return FieldCountRule


def validate_within_limits(
    schema: GraphQLSchema,
    document: DocumentNode,
    limits: Collection[type[ASTValidationRule]],
    rules: Collection[type[ASTValidationRule]],
    *,
    hide_suggestions: bool,
) -> list[GraphQLError]:
    """The errors of `document`: those of the `limits` alone when there are any, since they
    bound the work of the other `rules` (the specification's compare pairs of fields), else
    those of the other rules. With `hide_suggestions`, no message names a schema element the
    client did not write ("Did you mean …?")."""
    errors = validate(schema, document, limits, hide_suggestions=hide_suggestions)
    if errors:
        return errors
    return validate(schema, document, rules, hide_suggestions=hide_suggestions)

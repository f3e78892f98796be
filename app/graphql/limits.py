"""`MAX_QUERY_DEPTH` and `MAX_ALIASES` as validation rules.

They count as Strawberry's QueryDepthLimiter and MaxAliasesLimiter do, with the same messages,
but work out each fragment once. Strawberry's walk a fragment again at every spread, so about
a kilobyte of fragments, each spreading the next one twice, kept a worker validating for
hours; and an unknown fragment made them fail with a KeyError instead of a validation error.

Each factory makes a rule class; an app makes its rules once, so that ValidationCache, whose key
includes the rules, keeps working."""

from __future__ import annotations

from collections.abc import Callable

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

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

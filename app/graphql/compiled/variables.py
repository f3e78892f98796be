"""The variables of a planned document, coerced as graphql-core coerces them, without its
general walk when every variable is a scalar or an enum with no default (`$id: UUID!`, the
common case): each value goes straight to its type's `parse_value`. Whatever that walk would
refuse or fill in is left to it: a coercer answers None, and the request goes to Strawberry,
whose errors are the answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
    VariableDefinitionNode,
    type_from_ast,
)
from graphql.execution.values import VariableValues, get_variable_values

# Given the request's variables: their coerced values, or None when Strawberry must answer (a
# value its types refuse, or one this coercer does not handle).
Coercer = Callable[[Mapping[str, Any] | None], VariableValues | None]


def coercer(schema: GraphQLSchema, definitions: Sequence[VariableDefinitionNode]) -> Coercer:
    """How the variables of `definitions` are coerced, made once per plan."""
    leaves = []
    for definition in definitions:
        declared = type_from_ast(schema, definition.type)
        required = isinstance(declared, GraphQLNonNull)
        named = declared.of_type if isinstance(declared, GraphQLNonNull) else declared
        if definition.default_value is not None or not isinstance(
            named, GraphQLScalarType | GraphQLEnumType
        ):
            return _general(schema, definitions)
        leaves.append((definition.variable.name.value, named.parse_value, required))

    def coerce(variables: Mapping[str, Any] | None) -> VariableValues | None:
        given = variables or {}
        coerced: dict[str, Any] = {}
        for name, parse, required in leaves:
            if name not in given:
                if required:
                    return None
                continue
            value = given[name]
            if value is None:
                if required:
                    return None
                coerced[name] = None
                continue
            try:
                parsed = parse(value)
            except Exception:
                return None
            if parsed is Undefined:
                return None
            coerced[name] = parsed
        # The sources are read only for fragment variables, which no plan has.
        return VariableValues({}, coerced)

    return coerce


def _general(schema: GraphQLSchema, definitions: Sequence[VariableDefinitionNode]) -> Coercer:
    """graphql-core's own coercion, for input objects, lists and defaults."""

    def coerce(variables: Mapping[str, Any] | None) -> VariableValues | None:
        coerced = get_variable_values(schema, definitions, dict(variables or {}))
        return None if isinstance(coerced, list) else coerced

    return coerce

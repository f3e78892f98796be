"""What a GraphQL answer must look like: `violations` lists where an answer breaks the
response format of the specification, or where its `data` breaks the schema for the operation
that was sent (a missing or extra key, null in a non-null field, an unknown enum value, a scalar
of the wrong type)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_TOP_KEYS = frozenset({"data", "errors", "extensions"})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        return False
    return True


def _is_datetime(value: Any) -> bool:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


_SCALARS: dict[str, Any] = {
    "Int": lambda v: _is_int(v) and _INT_MIN <= v <= _INT_MAX,
    "Float": lambda v: _is_int(v) or isinstance(v, float),
    "String": lambda v: isinstance(v, str),
    "ID": lambda v: isinstance(v, str),
    "Boolean": lambda v: isinstance(v, bool),
    "UUID": _is_uuid,
    "DateTime": _is_datetime,
    "JSON": lambda v: True,
}


class _Checker:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self.found: list[str] = []

    def fields(self, type_: GraphQLObjectType, selection_set: SelectionSetNode) -> list[FieldNode]:
        """The fields `selection_set` selects on `type_`, fragments flattened."""
        selected: list[FieldNode] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                selected.append(selection)
                continue
            if isinstance(selection, FragmentSpreadNode):
                fragment: InlineFragmentNode | FragmentDefinitionNode = self.fragments[
                    selection.name.value
                ]
            else:
                assert isinstance(selection, InlineFragmentNode)
                fragment = selection
            condition = fragment.type_condition
            if condition is None or condition.name.value == type_.name:
                selected.extend(self.fields(type_, fragment.selection_set))
        return selected

    def object(
        self, type_: GraphQLObjectType, selection_set: SelectionSetNode, value: Any, path: str
    ) -> None:
        if not isinstance(value, dict):
            self.found.append(f"{path}: {type_.name} is not an object: {value!r}")
            return
        selected = self.fields(type_, selection_set)
        keys = {(field.alias or field.name).value for field in selected}
        for extra in sorted(set(value) - keys):
            self.found.append(f"{path}.{extra}: not selected")
        for field in selected:
            key = (field.alias or field.name).value
            if key not in value:
                self.found.append(f"{path}.{key}: missing")
                continue
            name = field.name.value
            if name == "__typename":
                if value[key] != type_.name:
                    self.found.append(f"{path}.{key}: {value[key]!r} is not {type_.name}")
                continue
            definition = type_.fields[name]
            self.value(definition.type, field.selection_set, value[key], f"{path}.{key}")

    def value(
        self,
        type_: GraphQLOutputType,
        selection_set: SelectionSetNode | None,
        value: Any,
        path: str,
    ) -> None:
        if isinstance(type_, GraphQLNonNull):
            if value is None:
                self.found.append(f"{path}: null in a non-null {type_}")
                return
            type_ = type_.of_type
        if value is None:
            return
        if isinstance(type_, GraphQLList):
            if not isinstance(value, list):
                self.found.append(f"{path}: {type_} is not a list: {value!r}")
                return
            for index, item in enumerate(value):
                self.value(type_.of_type, selection_set, item, f"{path}[{index}]")
        elif isinstance(type_, GraphQLEnumType):
            if value not in type_.values:
                self.found.append(f"{path}: {value!r} is not a {type_.name}")
        elif isinstance(type_, GraphQLScalarType):
            if not _SCALARS[type_.name](value):
                self.found.append(f"{path}: {value!r} is not a {type_.name}")
        elif isinstance(type_, GraphQLObjectType):
            assert selection_set is not None
            self.object(type_, selection_set, value, path)
        else:  # interfaces and unions: the schema has none
            self.found.append(f"{path}: unexpected type {type_}")


def _error_violations(errors: Any) -> list[str]:
    if not isinstance(errors, list) or not errors:
        return [f"errors is not a non-empty list: {errors!r}"]
    found: list[str] = []
    for index, error in enumerate(errors):
        where = f"errors[{index}]"
        if not isinstance(error, dict) or not isinstance(error.get("message"), str):
            found.append(f"{where}: no message: {error!r}")
            continue
        path = error.get("path")
        if path is not None and not (
            isinstance(path, list) and all(isinstance(p, str) or _is_int(p) for p in path)
        ):
            found.append(f"{where}: path {path!r} is not a list of keys and indexes")
        code = (error.get("extensions") or {}).get("code")
        if not isinstance(code, str):
            found.append(f"{where}: no extensions.code: {error!r}")
    return found


def violations(
    schema: GraphQLSchema, document: DocumentNode, answer: Any, operation_name: str | None = None
) -> list[str]:
    """Where `answer` (a decoded JSON body) is not a response to `document` in `schema`."""
    if not isinstance(answer, dict) or not answer or set(answer) - _TOP_KEYS:
        return [f"not a GraphQL response: {answer!r}"]
    if "data" not in answer and "errors" not in answer:
        return [f"neither data nor errors: {answer!r}"]
    found: list[str] = []
    if "errors" in answer:
        found.extend(_error_violations(answer["errors"]))
    data = answer.get("data")
    if data is None:
        if "errors" not in answer:
            found.append("data is null and there are no errors")
        return found
    operations = [
        definition
        for definition in document.definitions
        if isinstance(definition, OperationDefinitionNode)
        and (
            operation_name is None or (definition.name and definition.name.value) == operation_name
        )
    ]
    if len(operations) != 1:
        return [*found, f"data for an operation that cannot be chosen: {data!r}"]
    operation = operations[0]
    root = (
        schema.mutation_type if operation.operation == OperationType.MUTATION else schema.query_type
    )
    if root is None:
        return [*found, f"data for a {operation.operation.value} the schema lacks"]
    checker = _Checker(schema, document)
    checker.object(root, operation.selection_set, data, "data")
    return found + checker.found

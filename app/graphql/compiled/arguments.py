"""A mutation's arguments, from the values graphql-core coerced (by GraphQL names) to those its
resolver takes (by Python names, inputs built), as Strawberry's `convert_arguments` makes them.

Strawberry works out each argument's and each input field's type again for every request: 20 µs
of the 50 that the compiled path took for a create. For an input whose fields are all leaves
(scalars and enums, which Strawberry passes through as coerced) the conversion is worked out
once, here; for anything else it is Strawberry's own."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING
from typing import Any

from graphql import GraphQLSchema
from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.arguments import convert_arguments
from strawberry.types.base import StrawberryMaybe, StrawberryObjectDefinition, StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.field import StrawberryField
from strawberry.types.lazy_type import LazyType

# A field's arguments as its resolver takes them, from their coerced values.
Convert = Callable[[Mapping[str, Any]], dict[str, Any]]


def converter(schema: GraphQLSchema, field: StrawberryField) -> Convert:
    """The conversion of `field`'s coerced arguments (by GraphQL names) into its resolver's (by
    Python names), as Strawberry's `convert_arguments` makes them. Where it would only pass
    leaf values through, to build an input whose fields are all leaves, it is done here without
    working the types out again for each request. Anything else is Strawberry's conversion
    itself."""
    strawberry_schema = schema.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
    registry = strawberry_schema.schema_converter.scalar_registry
    config = strawberry_schema.config
    arguments = field.arguments
    plain: list[tuple[str, str, Callable[[Any], Any] | None]] = []
    for argument in arguments:
        type_ = _required(argument.type)
        name = config.name_converter.from_argument(argument)
        if _is_leaf(type_, registry):
            plain.append((name, argument.python_name, None))
        elif (build := _leaf_input(type_, registry, config)) is not None:
            plain.append((name, argument.python_name, build))
        else:
            return lambda given: convert_arguments(
                dict(given), arguments, scalar_registry=registry, config=config
            )

    def convert(given: Mapping[str, Any]) -> dict[str, Any]:
        converted: dict[str, Any] = {}
        for name, python_name, build in plain:
            if name in given:
                value = given[name]
                converted[python_name] = value if build is None or value is None else build(value)
        return converted

    return convert


def _required(type_: Any) -> Any:
    """`type_` without its `Optional` (a null converts to None either way)."""
    if isinstance(type_, StrawberryMaybe):
        return type_  # Some(…) around the value: Strawberry's conversion
    return type_.of_type if isinstance(type_, StrawberryOptional) else type_


def _is_leaf(type_: Any, registry: Mapping[object, Any]) -> bool:
    """Whether Strawberry passes a value of `type_` through as graphql-core coerced it."""
    if type_ is GlobalID or isinstance(type_, StrawberryMaybe | LazyType):
        return False
    return (
        bool(is_scalar(type_, registry))
        or isinstance(type_, StrawberryEnumDefinition)
        or has_enum_definition(type_)
    )


def _leaf_input(
    type_: Any, registry: Mapping[object, Any], config: Any
) -> Callable[[Mapping[str, Any]], Any] | None:
    """How an input object whose fields are all leaves is built from its coerced value, as
    `convert_argument` builds it: the fields given, and None for those without a default;
    None when it is any other type."""
    definition = getattr(type_, "__strawberry_definition__", None)
    if (
        not isinstance(definition, StrawberryObjectDefinition)
        or not definition.is_input
        or definition.from_input is not None
    ):
        return None
    names: list[tuple[str, str]] = []
    implicit: dict[str, Any] = {}
    for input_field in definition.fields:
        if not _is_leaf(_required(input_field.resolve_type(type_definition=definition)), registry):
            return None
        names.append((config.name_converter.from_field(input_field), input_field.python_name))
        if input_field.default_value is MISSING and input_field.default_factory is MISSING:
            implicit[input_field.python_name] = None

    def build(value: Mapping[str, Any]) -> Any:
        kwargs = dict(implicit)
        for name, python_name in names:
            if name in value:
                kwargs[python_name] = value[name]
        return type_(**kwargs)

    return build

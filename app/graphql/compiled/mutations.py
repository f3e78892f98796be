"""The compiled mutation path: a `createSession` or `updateSession` document that frontends send
again and again runs its resolver without graphql-core's execution, and its payload is rendered
by a renderer made once from the document's selection.

graphql-core's execution of a create costs several hundred microseconds besides the work of the
service: coercing the variables, building the Strawberry input, then completing each field of
the payload through its resolver, its type checks and its serializer. Here the variables are
coerced as graphql-core coerces them (`variables.py`: exactly what Strawberry accepts), the
arguments are converted by Strawberry's own function, the resolver is the schema's own (so the
service call, the mapping of domain errors to `userErrors` and the events are the resolver's),
and each selected field is serialized by its GraphQL type's serializer; the session's JSON
fields, stored as JSON text, go out as that text.

What it leaves to Strawberry: a document of anything but one such field, any directive, a
selection of a session's relations (`parent`, `children`, `ancestors`) or of anything a resolver
computes, and variables or arguments that graphql-core refuses (its errors are the answer).
Nothing has run when it leaves a request to Strawberry. An exception of the resolver is answered
as Strawberry answers it: logged, masked unless expected, at the field's path, `data` null."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationType,
    SelectionSetNode,
    located_error,
)
from graphql.execution.values import get_argument_values
from starlette.requests import HTTPConnection
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.execution import ExecutionResult
from strawberry.types.field import StrawberryField

from app import model
from app.graphql.compiled.arguments import Convert, converter
from app.graphql.compiled.plan import Unsupported, chosen, selections
from app.graphql.compiled.variables import Coercer, coercer
from app.graphql.context import Context
from app.graphql.errors import MaskUnexpectedErrors
from app.graphql.http_errors import http_result
from app.service import SessionService

# The mutations answered here: those whose payload is a session and `userErrors`.
MUTATIONS = frozenset({"createSession", "updateSession"})
# The type whose declared fields are read from its stored row (`Session.row`).
SESSION = "Session"
_BACKREF = GraphQLCoreConverter.DEFINITION_BACKREF

# A value of the payload, from the object that holds it, as its JSON.
Render = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class MutationPlan:
    """A mutation made ready to run: its variables, its field and how its payload renders."""

    coerce: Coercer  # its variables, as graphql-core coerces them
    key: str  # the field's response key
    definition: GraphQLField
    nodes: tuple[FieldNode, ...]
    field: StrawberryField
    convert: Convert  # its arguments, as Strawberry converts them
    resolve: Callable[..., Awaitable[Any]]  # the field's resolver
    info: str  # the name of its `info` parameter
    render: Render


@dataclass(slots=True)
class _Info:
    """What the mutations' resolvers read of their `strawberry.Info`: the context."""

    context: Context


def plan_mutation(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
) -> MutationPlan | None:
    """The plan of the operation `operation_name` of `document` (valid against `schema`), or
    None when it is not a mutation this path answers."""
    operation = chosen(document, operation_name)
    if operation is None or operation.operation is not OperationType.MUTATION:
        return None
    root = schema.mutation_type
    assert root is not None
    renderer = _Renderer(schema, document)
    try:
        fields = renderer.collect([operation.selection_set])
        if len(fields) != 1:
            raise Unsupported
        [(key, nodes)] = fields.items()
        name = nodes[0].name.value
        definition = root.fields.get(name)
        if name not in MUTATIONS or definition is None:
            raise Unsupported
        field = definition.extensions[_BACKREF]
        resolver = field.base_resolver
        if (
            not isinstance(field, StrawberryField)
            or resolver is None
            or not resolver.is_async
            or field.extensions
            or resolver.info_parameter is None
            or resolver.self_parameter is not None
            or resolver.parent_parameter is not None
            or resolver.root_parameter is not None
        ):
            raise Unsupported  # pragma: no cover - not how the schema's mutations are written
        render = renderer.complete(definition.type, nodes)
    except Unsupported:
        return None
    return MutationPlan(
        coerce=coercer(schema, tuple(operation.variable_definitions or ())),
        key=key,
        definition=definition,
        nodes=tuple(nodes),
        field=field,
        convert=converter(schema, field),
        resolve=resolver.wrapped_func,
        info=resolver.info_parameter.name,
        render=render,
    )


class _Renderer:
    """Makes the renderers of a document's selections."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }

    def collect(self, sets: list[SelectionSetNode]) -> dict[str, list[FieldNode]]:
        fields: dict[str, list[FieldNode]] = {}
        for selection in selections(sets, self.fragments, set()):
            key = selection.alias.value if selection.alias else selection.name.value
            fields.setdefault(key, []).append(selection)
        return fields

    def complete(self, type_: GraphQLOutputType, nodes: list[FieldNode]) -> Render:
        """How a value of `type_` selected by `nodes` renders, as graphql-core completes it
        (null stays null)."""
        if isinstance(type_, GraphQLNonNull):
            type_ = type_.of_type
        if isinstance(type_, GraphQLList):
            item = self.complete(type_.of_type, nodes)
            return lambda value: None if value is None else [item(each) for each in value]
        if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
            serialize = type_.serialize
            return lambda value: None if value is None else serialize(value)
        if not isinstance(type_, GraphQLObjectType):
            raise Unsupported  # pragma: no cover - no payload holds an interface or a union
        sets = [node.selection_set for node in nodes if node.selection_set is not None]
        keys = tuple((key, self.value(type_, fields)) for key, fields in self.collect(sets).items())

        def render(value: Any) -> Any:
            if value is None:
                return None
            return {key: each(value) for key, each in keys}

        return render

    def value(self, parent: GraphQLObjectType, nodes: list[FieldNode]) -> Render:
        """How the field of `parent` that `nodes` select renders, from the object holding it."""
        name = nodes[0].name.value
        if name == "__typename":
            type_name = parent.name
            return lambda _object: type_name
        definition = parent.fields.get(name)
        if definition is None:
            raise Unsupported  # pragma: no cover - introspection is no field of a payload
        field = definition.extensions[_BACKREF]
        assert isinstance(field, StrawberryField)
        attribute = field.python_name
        if parent.name == SESSION:
            return _declared(attribute, self.complete(definition.type, nodes))
        if field.base_resolver is not None:
            raise Unsupported  # pragma: no cover - the payloads' fields are plain
        complete = self.complete(definition.type, nodes)
        return lambda obj: complete(getattr(obj, attribute))


def _declared(attribute: str, complete: Render) -> Render:
    """How a session's declared field renders from the session (its row); its JSON fields, as
    the text they are stored as. Its relations are left to Strawberry."""
    if attribute not in model.Session.__annotations__:
        raise Unsupported
    if attribute in model.JSON_FIELDS:
        return lambda session: _json_text(session.row[attribute])
    return lambda session: complete(session.row[attribute])


def _json_text(text: str | None) -> orjson.Fragment | None:
    # What the field's resolver parses (`types._json`), spliced as it is.
    return None if text is None else orjson.Fragment(text)


class CompiledMutations:
    """Runs the planned mutations of a schema."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        # The Strawberry schema, for its error log.
        self.strawberry = schema.extensions[_BACKREF]
        self._mask = MaskUnexpectedErrors()

    def plan(self, document: DocumentNode, operation_name: str | None) -> MutationPlan | None:
        return plan_mutation(self.schema, document, operation_name)

    async def run(
        self,
        planned: MutationPlan,
        service: SessionService,
        request: HTTPConnection | None,
        variables: Mapping[str, Any] | None,
    ) -> bytes | None:
        """The JSON body of the answer, or None (before anything ran) when graphql-core would
        refuse the variables or arguments: Strawberry answers with its errors."""
        arguments = self._arguments(planned, variables)
        if arguments is None:
            return None
        arguments[planned.info] = _Info(Context(service, request))
        try:
            payload = await planned.resolve(**arguments)
            data = {planned.key: planned.render(payload)}
        except Exception as raised:
            return self._failed(planned, raised)
        return orjson.dumps({"data": data})

    def _arguments(
        self, planned: MutationPlan, variables: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """The resolver's arguments, converted as Strawberry converts them; None when
        graphql-core refuses the variables or the arguments."""
        coerced = planned.coerce(variables)
        if coerced is None:
            return None
        try:
            given = get_argument_values(planned.definition, planned.nodes[0], coerced)
        except GraphQLError:
            return None
        return planned.convert(given)

    def _failed(self, planned: MutationPlan, raised: Exception) -> bytes:
        """The answer to a resolver that raised, as Strawberry gives it: the error logged (when
        unexpected) and masked, at the field's path; the field null, and so `data` when the
        field is non-null (as the payloads are)."""
        error = located_error(raised, list(planned.nodes), [planned.key])
        self.strawberry.process_errors([error])
        shown = self._mask._process_errors([error])
        data = None if isinstance(planned.definition.type, GraphQLNonNull) else {planned.key: None}
        return orjson.dumps(http_result(ExecutionResult(data=data, errors=shown)))

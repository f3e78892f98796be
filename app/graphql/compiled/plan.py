"""From a validated query to what `app.store.json_reads` builds: the operation's fields, with
fragments spread and fields of one response key merged as GraphQL's execution collects them, and
where each page's and each session's arguments come from.

What the compiled path leaves to Strawberry: subscriptions, mutations (`compiled.mutations`
plans some), `eventCursor` (the event log), introspection, any directive (`@skip`, `@include`:
rare in the queries frontends repeat), and objects of more keys than one statement can build.
`plan` says so by returning None."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableDefinitionNode,
    get_named_type,
)

from app import model
from app.graphql.fields import graphql_name
from app.service import MAX_ANCESTRY
from app.store import json_reads as reads

# The session's declared fields, by GraphQL name.
_COLUMNS = {graphql_name(name): name for name in model.Session.__annotations__}
_PAGE_INFO: dict[str, reads.Value] = {
    "hasNextPage": reads.HasNext(),
    "hasPreviousPage": reads.HasPrevious(),
    "startCursor": reads.StartCursor(),
    "endCursor": reads.EndCursor(),
}


@dataclass(frozen=True, slots=True)
class Arguments:
    """Where a node's arguments are: its field and the nodes of the document naming it."""

    kind: str  # "session", "sessions" or "children"
    definition: GraphQLField
    node: FieldNode


@dataclass(slots=True)
class Plan:
    """A query made ready to run: what to build, and the arguments each node takes."""

    shape: reads.Shape
    variables: tuple[VariableDefinitionNode, ...]
    arguments: dict[int, Arguments] = field(default_factory=dict)


class Unsupported(Exception):
    """A part of a document the compiled paths leave to Strawberry."""


def chosen(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode | None:
    """The operation of `document` that a request naming `operation_name` runs, or None when
    there is no one such operation (Strawberry answers) or it has directives."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        if len(operations) != 1:
            return None
        [operation] = operations
    else:
        named = [o for o in operations if o.name is not None and o.name.value == operation_name]
        if len(named) != 1:
            return None
        [operation] = named
    return None if operation.directives else operation


# What a field of an object is, from its name, definition and nodes.
_Resolve = Callable[[str, GraphQLField, list[FieldNode]], reads.Value]


def plan(schema: GraphQLSchema, document: DocumentNode, operation_name: str | None) -> Plan | None:
    """The plan of the operation `operation_name` of `document` (valid against `schema`), or
    None when it is not one the compiled path answers."""
    operation = chosen(document, operation_name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    planner = _Planner(schema, fragments)
    try:
        shape = planner.root(operation.selection_set)
    except (Unsupported, reads.Uncompilable):
        return None
    return Plan(shape, tuple(operation.variable_definitions or ()), planner.arguments)


class _Planner:
    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode]):
        self.schema = schema
        self.fragments = fragments
        self.arguments: dict[int, Arguments] = {}

    def type(self, name: str) -> GraphQLObjectType:
        found = self.schema.get_type(name)
        assert isinstance(found, GraphQLObjectType)
        return found

    def collect(self, selection_sets: list[SelectionSetNode]) -> dict[str, list[FieldNode]]:
        """The fields of `selection_sets` by response key, in the order they first appear."""
        fields: dict[str, list[FieldNode]] = {}
        for selection in selections(selection_sets, self.fragments, set()):
            key = selection.alias.value if selection.alias else selection.name.value
            fields.setdefault(key, []).append(selection)
        if len(fields) > reads.MAX_KEYS:
            raise Unsupported
        return fields

    def shape(self, type_name: str, nodes: list[FieldNode], value: _Resolve) -> reads.Shape:
        """The object of type `type_name` that `nodes` (one response key) select."""
        sets = [node.selection_set for node in nodes if node.selection_set is not None]
        return self.object(type_name, sets, value)

    def object(self, type_name: str, sets: list[SelectionSetNode], value: _Resolve) -> reads.Shape:
        """The object of type `type_name` that `sets` select."""
        parent = self.type(type_name)
        keys: list[tuple[str, reads.Value]] = []
        for key, fields in self.collect(sets).items():
            name = fields[0].name.value
            if name == "__typename":
                keys.append((key, reads.Constant(type_name)))
                continue
            definition = parent.fields.get(name)
            if definition is None:
                raise Unsupported  # introspection's __schema and __type
            keys.append((key, value(name, definition, fields)))
        return reads.Shape(tuple(keys))

    def node(self, kind: str, definition: GraphQLField, fields: list[FieldNode]) -> int:
        number = len(self.arguments)
        self.arguments[number] = Arguments(kind, definition, fields[0])
        return number

    def root(self, selection_set: SelectionSetNode) -> reads.Shape:
        def value(name: str, definition: GraphQLField, fields: list[FieldNode]) -> reads.Value:
            if name == "session":
                node = self.node("session", definition, fields)
                return reads.SessionById(node, self.session(fields))
            if name == "sessions":
                return self.connection("sessions", definition, fields)
            raise Unsupported  # eventCursor, introspection

        return self.object("Query", [selection_set], value)

    def session(self, nodes: list[FieldNode]) -> reads.Shape:
        def value(name: str, definition: GraphQLField, fields: list[FieldNode]) -> reads.Value:
            if name in _COLUMNS:
                return reads.Column(_COLUMNS[name])
            if name == "parent":
                return reads.Parent(self.session(fields))
            if name == "ancestors":
                return reads.Ancestors(self.session(fields), MAX_ANCESTRY)
            if name == "children":
                connection = self.connection("children", definition, fields)
                return reads.Children(connection)
            raise Unsupported  # pragma: no cover - every field of Session is above

        return self.shape("Session", nodes, value)

    def connection(
        self, kind: str, definition: GraphQLField, nodes: list[FieldNode]
    ) -> reads.Connection:
        number = self.node(kind, definition, nodes)

        def value(name: str, _definition: GraphQLField, fields: list[FieldNode]) -> reads.Value:
            if name == "nodes":
                return reads.Nodes(self.session(fields))
            if name == "edges":
                return reads.Edges(self.edge(fields))
            if name == "pageInfo":
                return reads.PageInfo(self.page_info(fields))
            if name == "totalCount":
                return reads.TotalCount()
            raise Unsupported  # pragma: no cover

        type_name = get_named_type(definition.type).name
        return reads.Connection(number, self.shape(type_name, nodes, value))

    def edge(self, nodes: list[FieldNode]) -> reads.Shape:
        def value(name: str, _definition: GraphQLField, fields: list[FieldNode]) -> reads.Value:
            if name == "cursor":
                return reads.Cursor()
            return reads.Node(self.session(fields))

        return self.shape("SessionEdge", nodes, value)

    def page_info(self, nodes: list[FieldNode]) -> reads.Shape:
        return self.shape("PageInfo", nodes, lambda name, _d, _f: _PAGE_INFO[name])


def selections(
    selection_sets: list[SelectionSetNode],
    fragments: dict[str, FragmentDefinitionNode],
    spreading: set[str],
) -> Iterator[FieldNode]:
    """The fields of `selection_sets`, fragments spread. In a valid document every fragment
    applies where it is spread: each type is an object type, and no two share fields."""
    for selection_set in selection_sets:
        for selection in selection_set.selections:
            if selection.directives:
                raise Unsupported
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from selections([selection.selection_set], fragments, spreading)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = fragments[name]
                if fragment.directives or name in spreading:
                    raise Unsupported
                yield from selections([fragment.selection_set], fragments, spreading | {name})

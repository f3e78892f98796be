"""The query cost limit: a document that could return more than QUERY_COST_LIMIT objects is
refused at validation, before any resolver runs.

Depth, aliases and tokens bound the document's size, not the work it asks for: a page of 100
sessions with four levels of `children(first: 100)` under it passes all three and asks for 10^10
sessions. The cost is an estimate made from the document alone, since validation sees no
variables: every object the response can hold counts one, and a list multiplies what it holds by
its length, which is

- for a connection's `edges` and `nodes`, its page: `first`/`last` as written (at most 100),
  100 when given by a variable, 50 when left out;
- for `ancestors`, ANCESTORS: as many as the service walks up (its MAX_ANCESTRY, 1,000), since
  anyone can build a chain that long: one session's `ancestors` passes (1,001), over a page
  of 100 it does not (100,101), nor does `ancestors` inside `ancestors` (1,001,001);
- for any other list of objects, a full page.

Fragments count wherever they are spread, aliased fields each time they appear, and a field
selected twice twice; introspection (`__schema`, `__type`) costs nothing."""

from __future__ import annotations

from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    InlineFragmentNode,
    IntValueNode,
    NamedTypeNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    ValueNode,
    VariableNode,
    get_named_type,
)
from graphql.language.visitor import SKIP, VisitorAction

from app.listing import DEFAULT_PAGE, MAX_PAGE
from app.service import MAX_ANCESTRY

# A page of 100 sessions with their parent and five children costs about 900; a page of 20
# with their ancestors too, about 20,200.
QUERY_COST_LIMIT = 25_000
ANCESTORS = MAX_ANCESTRY
QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
# Characters of the longest Int literal (-2147483648).
MAX_INT_LITERAL_LENGTH = 11

# Lists of a known typical length, by field coordinate; connections' lists take their page.
LIST_SIZES = {"Session.ancestors": ANCESTORS}
PAGE_ARGUMENTS = ("first", "last")

# The types whose fields a selection can name.
Composite = GraphQLObjectType | GraphQLInterfaceType


class QueryCostRule(ValidationRule):
    """Reports each operation of the document whose estimated cost exceeds the limit."""

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._fragments = {
            definition.name.value: definition
            for definition in context.document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        # A fragment's cost depends only on the page of the connection it is spread in.
        self._fragment_costs: dict[tuple[str, int | None], int] = {}
        self._spreading: set[str] = set()

    def enter_operation_definition(
        self, node: OperationDefinitionNode, *_args: Any
    ) -> VisitorAction:
        root = self.context.schema.get_root_type(node.operation)
        if root is not None:
            cost = self._selections(node.selection_set, root, None)
            if cost > QUERY_COST_LIMIT:
                self.report_error(
                    GraphQLError(
                        f"query cost {cost} exceeds the limit of {QUERY_COST_LIMIT}; "
                        "ask for smaller pages",
                        node,
                        extensions={"code": QUERY_TOO_COMPLEX},
                    )
                )
        return SKIP

    def _selections(
        self, selection_set: SelectionSetNode, parent: Composite, page: int | None
    ) -> int:
        """The cost of `selection_set` on `parent`; `page` is the length of the lists of
        `parent` when it is a connection."""
        cost = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                cost += self._field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = self._type(selection.type_condition) or parent
                cost += self._selections(selection.selection_set, condition, page)
            elif isinstance(selection, FragmentSpreadNode):
                cost += self._spread(selection.name.value, page)
        return cost

    def _spread(self, name: str, page: int | None) -> int:
        key = (name, page)
        if key in self._fragment_costs:
            return self._fragment_costs[key]
        fragment = self._fragments.get(name)
        # A cycle of fragments is reported by another rule; here it adds nothing.
        if fragment is None or name in self._spreading:
            return 0
        condition = self._type(fragment.type_condition)
        if condition is None:
            return 0
        self._spreading.add(name)
        try:
            cost = self._selections(fragment.selection_set, condition, page)
        finally:
            self._spreading.discard(name)
        self._fragment_costs[key] = cost
        return cost

    def _field(self, node: FieldNode, parent: Composite, page: int | None) -> int:
        name = node.name.value
        # Introspection's meta-fields are not among `fields`: they cost nothing, like scalars.
        definition = parent.fields.get(name)
        target = definition and get_named_type(definition.type)
        if definition is None or node.selection_set is None or not isinstance(target, Composite):
            return 0
        list_size = page if page is not None else LIST_SIZES.get(f"{parent.name}.{name}", MAX_PAGE)
        inner = _page(node) if _is_paged(definition) else None
        return _length(definition.type, list_size) * (
            1 + self._selections(node.selection_set, target, inner)
        )

    def _type(self, condition: NamedTypeNode | None) -> Composite | None:
        if condition is None:
            return None
        found = self.context.schema.get_type(condition.name.value)
        return found if isinstance(found, Composite) else None


def _length(type_: GraphQLOutputType, list_size: int) -> int:
    """How many values of the named type a field of `type_` returns."""
    length = 1
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        if isinstance(type_, GraphQLList):
            length *= list_size
        type_ = type_.of_type
    return length


def _is_paged(definition: GraphQLField) -> bool:
    return any(argument in definition.args for argument in PAGE_ARGUMENTS)


def _page(node: FieldNode) -> int:
    """The largest page a connection field can return, as far as the document tells."""
    sizes = [
        _page_size(argument.value)
        for argument in node.arguments or ()
        if argument.name.value in PAGE_ARGUMENTS
    ]
    return max(sizes, default=DEFAULT_PAGE)


def _page_size(value: ValueNode) -> int:
    if isinstance(value, VariableNode):
        return MAX_PAGE
    if isinstance(value, IntValueNode):
        # Outside 0..100 the resolver refuses the argument; the estimate need not. Longer than
        # any Int, the literal is refused by IntLiteralRule (and `int()` would refuse a text of
        # over 4,300 digits with a ValueError).
        if len(value.value) > MAX_INT_LITERAL_LENGTH:
            return MAX_PAGE
        return min(max(int(value.value), 0), MAX_PAGE)
    return DEFAULT_PAGE  # null, or a value of another type, which another rule reports

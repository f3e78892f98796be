"""The field limits: a selection set of more than MAX_SELECTION_FIELDS fields, a document of more
than MAX_FIELDS, or one whose same-named fields the specification's rules would compare pair by
pair for seconds, is refused before those rules run; what clients really send passes. And no
message names the schema when introspection is off."""

from __future__ import annotations

import uuid
from typing import Any

import graphql.validation.rules.overlapping_fields_can_be_merged as overlapping
import pytest
import strawberry
import strawberry.schema.schema as strawberry_schema

from app.config import Settings
from app.graphql.limits import MAX_MERGED_PAIRS
from app.graphql.schema import CHARACTERS_PER_TOKEN, build_schema
from tests.conftest import SessionFactory
from tests.graphql.conftest import Run

DEFAULTS = Settings()


def one_session(body: str) -> str:
    # A fresh id each time, as an attacker sends it to miss the document cache.
    return f'{{ session(id: "{uuid.uuid4()}") {{ {body} }} }}'


async def messages(schema: strawberry.Schema, query: str) -> list[str]:
    result = await schema.execute(query)
    assert result.data is None
    return [error.message for error in result.errors or []]


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many fields the specification's overlapping-fields rule compared."""
    spent: list[int] = []
    spend = overlapping.spend_complexity_budget

    def counted(context: Any, cost: int) -> None:
        spent.append(cost)
        spend(context, cost)

    monkeypatch.setattr(overlapping, "spend_complexity_budget", counted)
    return spent


@pytest.mark.parametrize(
    ("body", "width"),
    [
        pytest.param(
            " ".join(["parent { parent { id } }"] * 284), 284, id="284 parents of parents"
        ),
        pytest.param(" ".join(["parent { id }"] * 497), 497, id="497 parents"),
    ],
)
async def test_quadratic_documents_are_refused_before_the_specifications_rules(
    schema: strawberry.Schema, compared: list[int], body: str, width: int
) -> None:
    allowed = DEFAULTS.max_selection_fields
    assert await messages(schema, one_session(body)) == [
        f"{width} fields found in one selection set. Allowed: {allowed}"
    ]
    assert compared == []


async def test_the_refusal_says_why_with_a_code(schema: strawberry.Schema) -> None:
    result = await schema.execute(one_session(" ".join(["parent { id }"] * 497)))
    assert result.errors is not None
    assert [error.formatted["extensions"] for error in result.errors] == [
        {"code": "QUERY_TOO_COMPLEX"}
    ]


async def test_a_document_padded_with_comments_is_refused_before_it_is_parsed(
    schema: strawberry.Schema, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    monkeypatch.setattr(
        strawberry_schema, "parse", lambda source, **_options: parsed.append(source)
    )
    limit = DEFAULTS.max_tokens * CHARACTERS_PER_TOKEN
    # Comments are no tokens: the token limit alone lets this megabyte through.
    query = "{ __typename }\n" + ("#" + "x" * 999 + "\n") * 1000
    result = await schema.execute(query)
    assert result.data is None
    assert [error.formatted for error in result.errors or []] == [
        {
            "message": f"the document is {len(query)} characters long. Allowed: {limit}",
            "extensions": {"code": "QUERY_TOO_COMPLEX"},
        }
    ]
    assert parsed == []


async def test_fields_of_fragments_count_in_the_selection_set_they_are_spread_in(
    schema: strawberry.Schema,
) -> None:
    fragments = " ".join(
        f"fragment P{i} on Session {{ {' '.join(['parent { id }'] * 10)} }}" for i in range(11)
    )
    spreads = " ".join(f"...P{i}" for i in range(11))
    inline = " ".join(["... on Session { parent { id } }"] * 101)
    assert await messages(schema, one_session(spreads) + " " + fragments) == [
        "110 fields found in one selection set. Allowed: 100"
    ]
    assert await messages(schema, one_session(inline)) == [
        "101 fields found in one selection set. Allowed: 100"
    ]


async def test_fields_are_counted_in_the_whole_document_at_every_spread() -> None:
    schema = build_schema(Settings(max_fields=50))
    # Each spread of Two adds its 3 fields (parent, its id, title); 2 levels of 4 spreads.
    fragments = (
        "fragment Four on Session { a: parent { ...Two } b: parent { ...Two }"
        " c: parent { ...Two } d: parent { ...Two } }"
        " fragment Two on Session { parent { id } title }"
    )
    # Four: 4 x (1 + 3) = 16 fields. Twice: 1 + 2 x (1 + 16) = 35; three times: 52.
    twice = one_session("x: parent { ...Four } y: parent { ...Four }")
    thrice = one_session("x: parent { ...Four } y: parent { ...Four } z: parent { ...Four }")
    passed = await schema.execute(f"{twice} {fragments}")
    assert not [error for error in passed.errors or [] if "found" in error.message]
    assert await messages(schema, f"{thrice} {fragments}") == ["52 fields found. Allowed: 50"]


async def test_fragments_doubling_at_every_level_are_counted_at_once(
    schema: strawberry.Schema,
) -> None:
    # Each fragment spreads the next twice: with the session, 2^61 fields in 3 KB.
    fragments = " ".join(
        f"fragment F{i} on Session {{ parent {{ ...F{i + 1} }} ...F{i + 1} }}" for i in range(60)
    )
    query = one_session("...F0") + f" {fragments} fragment F60 on Session {{ id }}"
    assert f"{2**61} fields found. Allowed: {DEFAULTS.max_fields}" in await messages(schema, query)


async def test_same_named_fields_under_the_caps_are_refused_when_they_make_too_many_pairs(
    schema: strawberry.Schema, compared: list[int]
) -> None:
    # 15 parents of 15 parents: 466 fields, none of its selection sets over 15, but the
    # specification's rule would compare 50,505 pairs of them (half a second).
    body = " ".join(["parent { " + " ".join(["parent { id }"] * 15) + " }"] * 15)
    assert await messages(schema, one_session(body)) == [
        f"50505 pairs of fields with the same response name found. Allowed: {MAX_MERGED_PAIRS};"
        " select each field once"
    ]
    assert compared == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param(
            "{ sessions { nodes { ...A } } } fragment A on Session { id ...B }"
            " fragment B on Session { title ...A }",
            "Cannot spread fragment 'A' within itself via 'B'.",
            id="circular",
        ),
        pytest.param(
            "{ sessions { nodes { ...A } } } fragment A on Session { id ...A }",
            "Cannot spread fragment 'A' within itself.",
            id="spread in itself",
        ),
        pytest.param(
            "{ sessions { nodes { id ...Missing } } }",
            "Unknown fragment 'Missing'.",
            id="unknown",
        ),
    ],
)
async def test_circular_and_unknown_fragments_are_reported_as_the_specification_says(
    schema: strawberry.Schema, query: str, expected: str
) -> None:
    assert expected in await messages(schema, query)


async def test_a_long_chain_of_fragments_is_refused_not_crashed(
    schema: strawberry.Schema,
) -> None:
    fragments = " ".join(f"fragment F{i} on Session {{ ...F{i + 1} }}" for i in range(280))
    query = "{ sessions { nodes { ...F0 } } } " + fragments + " fragment F280 on Session { id }"
    result = await schema.execute(query)
    assert result.data is None
    assert result.errors


BIG_PAGE = """
query Inbox {
  sessions(first: 20) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges {
      cursor
      node {
        ...Full
        parent { ...Full }
        children(first: 5) { totalCount nodes { ...Full } }
        ancestors { ...Brief }
      }
    }
  }
}
fragment Full on Session {
  ...Brief repo targetBranch branch messages inboxStatus sbxConfig parentId createdAt updatedAt
  version
}
fragment Brief on Session { id title }
"""


async def test_a_page_with_every_field_and_relation_through_fragments_passes(
    gql: Run, make_session: SessionFactory
) -> None:
    parent = await make_session()
    child = await make_session(parent=parent["id"])
    data = (await gql(BIG_PAGE)).ok()
    nodes = [edge["node"] for edge in data["sessions"]["edges"]]
    assert [node["id"] for node in nodes] == [str(child["id"]), str(parent["id"])]
    assert nodes[0]["parent"]["title"] == parent["title"]
    assert nodes[0]["ancestors"] == [{"id": str(parent["id"]), "title": parent["title"]}]
    assert [n["id"] for n in nodes[1]["children"]["nodes"]] == [str(child["id"])]


async def test_the_specifications_rules_still_run_under_the_limits(
    schema: strawberry.Schema,
) -> None:
    query = one_session("parent: children { totalCount } parent { id }")
    assert await messages(schema, query) == [
        "Fields 'parent' conflict because 'children' and 'parent' are different fields."
        " Use different aliases on the fields to fetch both if this was intentional."
    ]


MISSPELT = [
    pytest.param(
        "{ sessionz { totalCount } }", "Cannot query field 'sessionz' on type 'Query'.", id="field"
    ),
    pytest.param(
        "{ sessions(filter: {inboxStatuss: [ACTIVE]}) { totalCount } }",
        "Expected value of type 'SessionFilter' not to include unknown field 'inboxStatuss'",
        id="input field",
    ),
    pytest.param(
        "{ sessions(filter: {inboxStatus: [ACTIV]}) { totalCount } }",
        "Value 'ACTIV' does not exist in 'InboxStatus' enum.",
        id="enum value",
    ),
    pytest.param(
        "{ sessions(frist: 1) { totalCount } }",
        "Unknown argument 'frist' on field 'Query.sessions'.",
        id="argument",
    ),
    pytest.param(
        "query ($f: SessionFiltr) { sessions(filter: $f) { totalCount } }",
        "Unknown type 'SessionFiltr'.",
        id="type",
    ),
]


@pytest.mark.parametrize(("query", "message"), MISSPELT)
async def test_no_suggestion_names_the_schema_when_introspection_is_off(
    query: str, message: str
) -> None:
    schema = build_schema(Settings(introspection=False))
    found = await messages(schema, query)
    assert [text for text in found if text.startswith(message)]
    assert not [text for text in found if "Did you mean" in text]


@pytest.mark.parametrize(("query", "message"), MISSPELT)
async def test_suggestions_are_given_when_introspection_is_on(
    schema: strawberry.Schema, query: str, message: str
) -> None:
    found = await messages(schema, query)
    assert [text for text in found if text.startswith(message) and "Did you mean" in text]


VARIABLES = [
    pytest.param(
        "query ($s: [InboxStatus!]) { sessions(filter: {inboxStatus: $s}) { totalCount } }",
        {"s": ["ACTIV"]},
        id="enum value",
    ),
    pytest.param(
        "query ($f: SessionFilter) { sessions(filter: $f) { totalCount } }",
        {"f": {"inboxStatuss": ["ACTIVE"]}},
        id="input field",
    ),
]


@pytest.mark.parametrize(("query", "variables"), VARIABLES)
@pytest.mark.parametrize("introspection", [False, True])
async def test_variables_get_suggestions_only_when_introspection_is_on(
    query: str, variables: dict[str, Any], introspection: bool
) -> None:
    schema = build_schema(Settings(introspection=introspection))
    result = await schema.execute(query, variable_values=variables)
    [message] = [error.message for error in result.errors or []]
    assert message.startswith("Variable '$")
    assert ("Did you mean" in message) is introspection

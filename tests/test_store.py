"""The store: statements composed and compiled once, derived from the declaration, and the
dialect details behind it, on both engines."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson
import pytest
from piccolo.querystring import QueryString

from app import model
from app.db import Database
from app.listing import SessionFilter
from app.store import Conflict, Constraint, SessionStore, queries, schema
from app.store.dialect import POSTGRES, SQLITE, Dialect
from app.store.statement import Param, Statement
from app.tables import InboxStatus
from tests.conftest import SessionFactory


def test_the_columns_read_are_the_declared_session_fields() -> None:
    assert [column._meta.name for column in schema.ROW] == list(model.Session.__annotations__)


def test_a_statement_is_composed_and_compiled_once_per_dialect() -> None:
    built: list[str] = []

    def build(dialect: Dialect) -> QueryString:
        built.append(dialect.engine_type)
        return QueryString(
            "SELECT {} FROM {} WHERE {} = {}", schema.ID, schema.TABLE, schema.ID, Param("id")
        )

    statement = Statement(build)
    for _ in range(3):
        postgres = statement.bind(POSTGRES, id=1)
        sqlite = statement.bind(SQLITE, id=2)
    assert built == ["postgres", "sqlite"]
    assert postgres.compile_string("postgres") == (
        'SELECT "session"."id" FROM session WHERE "session"."id" = $1',
        [1],
    )
    assert sqlite.compile_string("sqlite") == (
        'SELECT "session"."id" FROM session WHERE "session"."id" = ?',
        [2],
    )


def test_a_statement_takes_its_values_as_params() -> None:
    statement = Statement(lambda _dialect: QueryString("SELECT {}", 1))
    with pytest.raises(TypeError, match="Params"):
        statement.compiled(POSTGRES)


@pytest.mark.parametrize("dialect", [POSTGRES, SQLITE], ids=["postgres", "sqlite"])
def test_a_list_of_ids_is_one_parameter_whatever_its_length(dialect: Dialect) -> None:
    texts = {
        queries.GET_MANY.bind(dialect, ids=dialect.array([uuid.uuid4()] * n)).sql for n in (1, 50)
    }
    assert len(texts) == 1
    (text,) = texts
    assert text.count("$" if dialect is POSTGRES else "?") == 1


def test_a_bound_statement_reads_as_its_sql() -> None:
    bound = queries.CHILDREN_COUNTS.bind(POSTGRES, parent_ids=[])
    assert "count(" in bound
    assert str(bound) == bound.sql


@pytest.fixture
def store(db: Database) -> SessionStore:
    return SessionStore(db)


async def test_many_sessions_are_read_in_one_statement(
    store: SessionStore, make_session: SessionFactory
) -> None:
    made = [await make_session() for _ in range(3)]
    found = await store.get_many([row["id"] for row in made] + [uuid.uuid4()])
    assert {str(key) for key in found} == {str(row["id"]) for row in made}
    assert await store.get_many([]) == {}


async def test_children_counts_of_no_parent_are_empty(store: SessionStore) -> None:
    assert await store.children_counts([]) == {}


async def test_an_empty_status_filter_matches_nothing(
    store: SessionStore, make_session: SessionFactory
) -> None:
    await make_session()
    assert await store.count(SessionFilter(inbox_status=())) == 0
    assert await store.count(SessionFilter(inbox_status=(InboxStatus.ACTIVE,))) == 1


def _row(**fields: object) -> model.Session:
    now = datetime.now(UTC)
    row: dict[str, object] = {
        "id": uuid.uuid4(),
        "repo": "acme/app",
        "target_branch": "main",
        "title": "A title",
        "branch": "a-branch",
        "messages": "[]",
        "inbox_status": InboxStatus.ACTIVE,
        "sbx_config": None,
        "parent": None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    row.update(fields)
    return row  # type: ignore[return-value]


async def test_refused_writes_name_their_constraint(store: SessionStore) -> None:
    first = await store.insert(_row(), idempotency_key="k", fingerprint="f")
    assert first is not None
    with pytest.raises(Conflict) as taken:
        await store.insert(_row(), idempotency_key=None, fingerprint=None)
    assert taken.value.constraint is Constraint.BRANCH
    with pytest.raises(Conflict) as orphan:
        await store.insert(
            _row(branch="other", parent=uuid.uuid4()), idempotency_key=None, fingerprint=None
        )
    assert orphan.value.constraint is Constraint.PARENT
    # A taken idempotency key is no error: no row comes back.
    assert await store.insert(_row(branch="third"), idempotency_key="k", fingerprint="f") is None
    earlier = await store.idempotent("k")
    assert earlier is not None
    assert earlier.fingerprint == "f"
    assert dict(earlier.session) == dict(first)


async def test_json_is_stored_and_read_as_its_text(store: SessionStore) -> None:
    created = await store.insert(
        _row(messages="1.5", sbx_config='{"a": [1]}'), idempotency_key=None, fingerprint=None
    )
    assert created is not None
    read = await store.get(created["id"])
    assert read is not None
    assert (read["messages"], read["sbx_config"]) == ("1.5", '{"a": [1]}')
    changed = await store.update(
        created["id"], {"messages": '"text"', "sbx_config": None}, updated_at=datetime.now(UTC)
    )
    assert changed is not None
    assert (changed["messages"], changed["sbx_config"], changed["version"]) == ('"text"', None, 2)


async def test_ancestry_walks_up_to_the_root(store: SessionStore) -> None:
    root = await store.insert(_row(branch="root"), idempotency_key=None, fingerprint=None)
    assert root is not None
    child = await store.insert(
        _row(branch="child", parent=root["id"]), idempotency_key=None, fingerprint=None
    )
    assert child is not None
    walk = await store.ancestry(child["id"], root["id"], 10)
    assert (walk.found, walk.cycle, walk.depth) == (True, True, 1)
    assert (await store.ancestry(uuid.uuid4(), root["id"], 10)).found is False
    chains = await store.ancestors([child["id"], root["id"]], 10)
    assert [row["id"] for row in chains[child["id"]]] == [root["id"]]
    assert chains[root["id"]] == []


@pytest.mark.parametrize("stored", [None, "null", "[]", '[1, "one"]'])
async def test_an_append_adds_to_a_list_or_null_and_keeps_json_text(
    store: SessionStore, stored: str | None
) -> None:
    created = await store.insert(_row(messages=stored), idempotency_key=None, fingerprint=None)
    assert created is not None
    before = orjson.loads(stored or "null") or []
    added = [2, "two", {"three": [3.5, True, None]}, [], {}]

    changed = await store.append_messages(
        created["id"], orjson.dumps(added).decode(), updated_at=datetime.now(UTC)
    )

    assert changed is not None
    assert isinstance(changed["messages"], str)
    assert orjson.loads(changed["messages"]) == [*before, *added]
    assert changed["version"] == 2
    read = await store.get(created["id"])
    assert read is not None
    assert read["messages"] == changed["messages"]


@pytest.mark.parametrize(
    ("stored", "kind"),
    [
        (None, "array"),
        ("null", "array"),
        ("[1]", "array"),
        ('{"a": 1}', "object"),
        ('"text"', "string"),
        ("7", "number"),
        ("1.5", "number"),
        ("true", "boolean"),
        ("false", "boolean"),
    ],
)
async def test_the_type_of_messages_has_json_s_name_on_both_engines(
    store: SessionStore, stored: str | None, kind: str
) -> None:
    created = await store.insert(_row(messages=stored), idempotency_key=None, fingerprint=None)
    assert created is not None
    assert await store.messages_type(created["id"]) == kind
    appended = await store.append_messages(created["id"], "[1]", updated_at=datetime.now(UTC))
    assert (appended is not None) is (kind == "array")
    assert await store.messages_type(uuid.uuid4()) is None


async def test_no_append_to_a_session_that_does_not_exist(store: SessionStore) -> None:
    assert await store.append_messages(uuid.uuid4(), "[1]", updated_at=datetime.now(UTC)) is None

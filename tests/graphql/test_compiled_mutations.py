"""The compiled mutation path answers `createSession` and `updateSession` as Strawberry does: the
same payload (in the document's order) for the same change, the same `userErrors` for each
refusal, Strawberry's own errors for variables it refuses (by leaving them to it, before anything
ran), and an unexpected error masked and logged. A mutation cannot run both ways, so each runs
once through Strawberry and once compiled, on inputs that differ only where the answers are
expected to (the repo, hence the ids and times)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import httpx
import orjson
import pytest
from graphql import parse
from strawberry.types.arguments import convert_arguments

from app import validation
from app.config import Settings
from app.db import DatabaseUnavailable
from app.events import EventKind
from app.graphql.compiled.mutations import CompiledMutations, plan_mutation
from app.graphql.context import Context
from app.graphql.schema import InboxSchema
from app.main import create_app
from app.service import SessionService
from app.state import AppState
from app.tables import InboxStatus
from tests.conftest import SessionFactory, with_state
from tests.graphql.conftest import Result
from tests.watching import watching

EVERY_FIELD = """
  id repo targetBranch title branch messages inboxStatus sbxConfig parentId createdAt updatedAt
  version __typename
"""
BENCH = (
    "mutation Create($input: CreateSessionInput!) { createSession(input: $input) "
    "{ session { id title branch } userErrors { code message } } }"
)
CREATE = (
    "mutation ($input: CreateSessionInput!) { createSession(input: $input) "
    f"{{ session {{ {EVERY_FIELD} }} userErrors {{ code field message __typename }} }} }}"
)
UPDATE = (
    "mutation ($id: UUID!, $input: UpdateSessionInput!) { updateSession(id: $id, input: $input) "
    f"{{ __typename userErrors {{ message field code }} session {{ {EVERY_FIELD} }} }} }}"
)
CREATES = {
    "the benchmark's": BENCH,
    "every field": CREATE,
    "aliases and fragments": "mutation ($input: CreateSessionInput!) { made: createSession("
    "input: $input) { ...payload session { v: version id } } } fragment payload on "
    "CreateSessionPayload { userErrors { code } session { ... on Session { title id } } "
    "__typename }",
    "literal input": "mutation ($repo: String!) { createSession(input: {repo: $repo, "
    'targetBranch: "main", messages: [{role: "user", content: "Fix it"}, 1.5, null]}) '
    f"{{ session {{ {EVERY_FIELD} }} userErrors {{ code }} }} }}",
}
MESSAGES = [{"role": "user", "content": "Fix the login page ✓"}, {"n": 1234567890123456789}]
# A document one level deeper than `messages` may be.
DEEP: Any = 1
for _ in range(validation.JSON_MAX_DEPTH + 1):
    DEEP = [DEEP]
# What differs between two runs of one change: made by the server, or the repo it is made in.
_VARYING = {"id", "createdAt", "updatedAt"}

pytestmark = pytest.mark.usefixtures("count_compiled")

Both = Callable[..., Awaitable[tuple[Result, Result]]]


@pytest.fixture
def count_compiled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many mutations the compiled path ran (answered, whatever the answer)."""
    ran = [0]
    run = CompiledMutations.run

    async def counted(self: CompiledMutations, *args: Any, **kwargs: Any) -> bytes | None:
        body = await run(self, *args, **kwargs)
        ran[0] += body is not None
        return body

    monkeypatch.setattr(CompiledMutations, "run", counted)
    return ran


async def strawberry(
    schema: InboxSchema, service: SessionService, query: str, variables: dict[str, Any]
) -> Result:
    result = await schema.execute(query, variable_values=variables, context_value=Context(service))
    # As the view does once Strawberry has answered: the next time, it may run compiled.
    schema.compiled.learn(query, None)
    return Result(result.data, [dict(error.formatted) for error in result.errors or []])


async def compiled(
    schema: InboxSchema, service: SessionService, query: str, variables: dict[str, Any]
) -> Result | None:
    body = await schema.compiled.mutate(service, None, query, variables, None)
    if body is None:
        return None
    answer = orjson.loads(body)
    return Result(answer.get("data"), answer.get("errors", []))


@pytest.fixture
def both(schema: InboxSchema, service: SessionService, count_compiled: list[int]) -> Both:
    """Runs `query` through Strawberry with `first`, then compiled with `second`, and returns
    both results, after checking that the compiled path answered."""

    async def run(
        query: str, first: dict[str, Any], second: dict[str, Any]
    ) -> tuple[Result, Result]:
        expected = await strawberry(schema, service, query, first)
        before = count_compiled[0]
        answer = await compiled(schema, service, query, second)
        assert answer is not None, "the compiled path left it to Strawberry"
        assert count_compiled[0] == before + 1
        return expected, answer

    return run


def normal(value: Any, repos: tuple[str, ...] = ()) -> Any:
    """`value` with what differs between two runs of one change replaced, its order kept."""
    if isinstance(value, dict):
        return {
            key: "<varies>" if key in _VARYING else normal(item, repos)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [normal(item, repos) for item in value]
    return "<repo>" if value in repos else value


def same(expected: Result, answer: Result, *repos: str) -> None:
    """The two answers are one, in the same order, but for what `normal` replaces."""
    assert orjson.dumps(normal(answer.data, repos)) == orjson.dumps(normal(expected.data, repos))
    assert answer.errors == expected.errors


def create_input(repo: str = "acme/app", **fields: Any) -> dict[str, Any]:
    return {"input": {"repo": repo, "targetBranch": "main", "messages": MESSAGES, **fields}}


@pytest.mark.parametrize("name", CREATES)
async def test_each_create_answers_as_strawberry(both: Both, name: str) -> None:
    query = CREATES[name]
    if name == "literal input":
        expected, answer = await both(query, {"repo": "acme/one"}, {"repo": "acme/two"})
    else:
        expected, answer = await both(query, create_input("acme/one"), create_input("acme/two"))
    assert expected.errors == []
    same(expected, answer, "acme/one", "acme/two")
    # Made, not replayed: a session of its own.
    [created] = answer.ok().values()
    assert created["session"]["id"] != next(iter(expected.ok().values()))["session"]["id"]


async def test_a_create_under_a_parent_answers_as_strawberry(
    both: Both, make_session: SessionFactory
) -> None:
    parent = str((await make_session())["id"])
    expected, answer = await both(
        CREATE, create_input("acme/one", parentId=parent), create_input("acme/two", parentId=parent)
    )
    same(expected, answer, "acme/one", "acme/two")
    assert answer.ok()["createSession"]["session"]["parentId"] == parent


async def test_an_idempotent_retry_answers_the_first_session_as_strawberry(both: Both) -> None:
    variables = create_input("acme/app", idempotencyKey="req-1")
    expected, answer = await both(CREATE, variables, variables)
    assert answer == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"repo": " "},
        {"targetBranch": ""},
        {"targetBranch": "ma\x00in"},
        {"messages": "he\x00llo"},
        {"messages": DEEP},
        {"idempotencyKey": ""},
        {"idempotencyKey": "k" * (validation.IDEMPOTENCY_KEY_MAX + 1)},
        {"repo": "r" * (validation.TEXT_MAX + 1)},
        {"parentId": str(uuid.uuid4())},
    ],
    ids=lambda fields: ",".join(fields),
)
async def test_each_refusal_of_a_create_gives_strawberrys_user_errors(
    both: Both, service: SessionService, fields: dict[str, Any]
) -> None:
    before = await service.count()
    expected, answer = await both(CREATE, create_input(**fields), create_input(**fields))
    assert expected.ok()["createSession"]["userErrors"], "not a refusal"
    assert answer == expected
    assert await service.count() == before


async def test_an_idempotency_mismatch_gives_strawberrys_user_errors(both: Both) -> None:
    await made_with_key(both, "acme/app")
    refused = create_input("acme/web", idempotencyKey="req-1")
    expected, answer = await both(CREATE, refused, refused)
    assert expected.ok()["createSession"]["userErrors"][0]["code"] == "IDEMPOTENCY_MISMATCH"
    assert answer == expected


async def made_with_key(both: Both, repo: str) -> None:
    made = create_input(repo, idempotencyKey="req-1")
    expected, answer = await both(CREATE, made, made)
    assert answer == expected


@pytest.mark.parametrize(
    "variables",
    [
        {},
        {"input": None},
        {"input": {"repo": "acme/app"}},
        {"input": {"repo": 5, "targetBranch": "main"}},
        {"input": {"repo": "acme/app", "targetBranch": None}},
        {"input": {"repo": "acme/app", "targetBranch": "main", "title": "mine"}},
        {"input": {"repo": "acme/app", "targetBranch": "main", "parentId": "nope"}},
        {"input": {"repo": "acme/app", "targetBranch": "main", "messages": float("inf")}},
        {"input": {"repo": "acme/app", "targetBranch": "main", "messages": 2**64}},
        {"input": "acme/app"},
    ],
    ids=repr,
)
async def test_variables_strawberry_refuses_are_left_to_strawberry(
    schema: InboxSchema, service: SessionService, variables: dict[str, Any]
) -> None:
    await strawberry(schema, service, CREATE, create_input("acme/app"))
    before = await service.count()
    assert (await strawberry(schema, service, CREATE, variables)).errors
    assert await compiled(schema, service, CREATE, variables) is None
    assert await service.count() == before


@pytest.mark.parametrize(
    "query",
    [
        'mutation { createSession(input: {repo: "a/b", targetBranch: "main"}) '
        "{ session { parent { id } } } }",
        'mutation { createSession(input: {repo: "a/b", targetBranch: "main"}) '
        "{ session { ancestors { id } children { totalCount } } } }",
        'mutation { createSession(input: {repo: "a/b", targetBranch: "main"}) '
        "{ session { id @include(if: true) } } }",
        'mutation { a: createSession(input: {repo: "a/b", targetBranch: "main"}) '
        '{ session { id } } b: createSession(input: {repo: "a/c", targetBranch: "main"}) '
        "{ session { id } } }",
        'mutation { deleteSession(id: "00000000-0000-4000-8000-000000000000") { deletedId } }',
        'mutation { appendMessages(id: "00000000-0000-4000-8000-000000000000", messages: [1]) '
        "{ session { id } } }",
        '{ session(id: "00000000-0000-4000-8000-000000000000") { id } }',
    ],
)
async def test_what_it_cannot_answer_goes_to_strawberry(
    schema: InboxSchema, service: SessionService, query: str
) -> None:
    await strawberry(schema, service, query, {})
    assert await compiled(schema, service, query, {}) is None


async def test_a_document_strawberry_refused_is_never_compiled(
    schema: InboxSchema, service: SessionService
) -> None:
    query = "mutation ($input: CreateSessionInput!) { createSession(input: $input) { nope } }"
    assert (await strawberry(schema, service, query, create_input("acme/app"))).errors
    assert await compiled(schema, service, query, create_input("acme/app")) is None


@pytest.mark.parametrize(
    "raised",
    [
        RuntimeError("connection to 10.0.0.7 refused: password=hunter2"),
        DatabaseUnavailable("the database cannot be reached now"),
    ],
    ids=repr,
)
async def test_an_error_of_the_service_is_answered_as_strawberry_answers_it(
    both: Both,
    service: SessionService,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    raised: Exception,
) -> None:
    async def broken(*_args: Any, **_kwargs: Any) -> None:
        raise raised

    monkeypatch.setattr(service, "create", broken)
    variables = create_input("acme/app")
    expected, answer = await both(BENCH, variables, variables)
    assert expected.data is None
    assert answer == expected
    if isinstance(raised, RuntimeError):
        assert answer.errors[0]["message"] == "Unexpected error."
        # Logged for the operator each time: by Strawberry, then by the compiled path.
        logged = [record for record in caplog.records if "hunter2" in record.getMessage()]
        assert len(logged) == 2


# updateSession ------------------------------------------------------------------------------


async def test_an_update_answers_as_strawberry(both: Both, make_session: SessionFactory) -> None:
    one = await make_session(repo="acme/one", messages=MESSAGES)
    two = await make_session(repo="acme/two", messages=MESSAGES)
    change = {"title": "Renamed", "inboxStatus": "COMPLETED", "sbxConfig": {"cpu": 2}}
    expected, answer = await both(
        UPDATE,
        {"id": str(one["id"]), "input": {**change, "expectedVersion": 1}},
        {"id": str(two["id"]), "input": {**change, "expectedVersion": 1}},
    )
    same(expected, answer, "acme/one", "acme/two")
    assert answer.ok()["updateSession"]["session"]["version"] == 2


async def test_each_refusal_of_an_update_gives_strawberrys_user_errors(
    both: Both, make_session: SessionFactory
) -> None:
    taken = await make_session()
    row = str((await make_session())["id"])
    missing = str(uuid.uuid4())
    for variables in (
        {"id": missing, "input": {"title": "x"}},
        {"id": row, "input": {"title": "x", "expectedVersion": 7}},
        {"id": row, "input": {"branch": taken["branch"]}},
        {"id": row, "input": {"parentId": row}},
        {"id": row, "input": {"parentId": missing}},
        {"id": row, "input": {"repo": None}},
        {"id": row, "input": {"title": "two\nlines"}},
    ):
        expected, answer = await both(UPDATE, variables, variables)
        assert expected.ok()["updateSession"]["userErrors"], variables
        assert answer == expected


# Over HTTP -----------------------------------------------------------------------------------


TOKEN = "s3cret-token"


async def test_http_runs_a_mutation_compiled_from_its_second_time(
    settings: Settings, app_state: AppState, count_compiled: list[int]
) -> None:
    app = create_app(replace(settings, api_tokens=(TOKEN,)))
    transport = httpx.ASGITransport(app=with_state(app, {"inbox": app_state}))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        bodies = []
        for repo in ("acme/one", "acme/two", "acme/three"):
            response = await http.post(
                "/graphql",
                json={"query": BENCH, "variables": create_input(repo), "operationName": "Create"},
                headers={
                    "Accept": "application/graphql-response+json",
                    "Authorization": f"Bearer {TOKEN}",
                },
            )
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/graphql-response+json"
            bodies.append(response.json())
        # A GET never runs a mutation, compiled or not; nor does a request without the token.
        response = await http.get(
            "/graphql",
            params={"query": BENCH, "operationName": "Create"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert response.status_code == 405
        body = {"query": BENCH, "variables": create_input("acme/four"), "operationName": "Create"}
        assert (await http.post("/graphql", json=body)).status_code == 401
    assert count_compiled[0] == 2
    assert normal(bodies[0]) == normal(bodies[1]) == normal(bodies[2])
    assert [body["data"]["createSession"]["userErrors"] for body in bodies] == [[], [], []]
    assert await app_state.service.count() == 3


async def test_a_compiled_create_and_update_are_announced(
    schema: InboxSchema, service: SessionService
) -> None:
    await strawberry(schema, service, CREATE, create_input("acme/one"))
    await strawberry(schema, service, UPDATE, {"id": str(uuid.uuid4()), "input": {}})
    async with watching(service) as watcher:
        made = await compiled(schema, service, CREATE, create_input("acme/three"))
        assert made is not None
        session_id = uuid.UUID(made.ok()["createSession"]["session"]["id"])
        changed = await compiled(
            schema, service, UPDATE, {"id": str(session_id), "input": {"title": "Renamed"}}
        )
        assert changed is not None
        assert changed.ok()["updateSession"]["userErrors"] == []
        seen = await watcher.through(session_id, EventKind.UPDATED)
    assert [(event.kind, event.session_id) for event in seen] == [
        (EventKind.CREATED, session_id),
        (EventKind.UPDATED, session_id),
    ]


@pytest.mark.parametrize(
    ("query", "given"),
    [
        (CREATE, {"input": {"repo": "a/b", "targetBranch": "main"}}),
        (
            CREATE,
            {
                "input": {
                    "repo": "a/b",
                    "targetBranch": "main",
                    "messages": None,
                    "parentId": uuid.uuid4(),
                    "idempotencyKey": "k",
                }
            },
        ),
        (UPDATE, {"id": uuid.uuid4(), "input": {}}),
        (
            UPDATE,
            {
                "id": uuid.uuid4(),
                "input": {
                    "inboxStatus": InboxStatus.ARCHIVED,
                    "sbxConfig": {"cpu": 2},
                    "parentId": None,
                    "title": "t",
                    "expectedVersion": 3,
                },
            },
        ),
    ],
)
def test_arguments_are_converted_as_strawberry_converts_them(
    schema: InboxSchema, query: str, given: dict[str, Any]
) -> None:
    planned = plan_mutation(schema._schema, parse(query), None)
    assert planned is not None
    fast = planned.convert(given)
    expected = convert_arguments(
        given,
        planned.field.arguments,
        scalar_registry=schema.schema_converter.scalar_registry,
        config=schema.config,
    )
    assert fast.keys() == expected.keys()
    for name, value in expected.items():
        assert type(fast[name]) is type(value)
        if hasattr(value, "__dict__"):  # an input
            assert vars(fast[name]) == vars(value)
        else:
            assert fast[name] == value
    # Built here, not by Strawberry's conversion.
    assert planned.convert.__name__ == "convert"


# Bodies whose variables Strawberry refuses (as the request's text, so that numbers no float
# holds reach the JSON scalar as written), and ones the service refuses.
_REFUSED_BODIES = [
    '"messages": 1e400',
    '"messages": [18446744073709551616]',
    '"messages": 3.14159265358979323846264338',
    '"targetBranch": null',
    '"title": "mine"',
    '"parentId": "nope"',
    '"repo": " "',
    '"parentId": "00000000-0000-4000-8000-000000000000"',
]


async def test_http_answers_each_refusal_as_strawberry_does(
    settings: Settings, app_state: AppState, count_compiled: list[int]
) -> None:
    def body(extra: str) -> bytes:
        query = orjson.dumps(CREATE).decode()
        input_ = f'{{"repo": "acme/app", "targetBranch": "main", {extra}}}'
        return f'{{"query": {query}, "variables": {{"input": {input_}}}}}'.encode()

    answers: list[list[tuple[int, Any]]] = []
    for compiled_reads in (False, True):
        app = create_app(replace(settings, compiled_reads=compiled_reads))
        transport = httpx.ASGITransport(app=with_state(app, {"inbox": app_state}))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            headers = {"Content-Type": "application/json"}
            learned = await http.post("/graphql", content=body('"messages": 1'), headers=headers)
            assert learned.json()["data"]["createSession"]["userErrors"] == []
            responses = [
                await http.post("/graphql", content=body(extra), headers=headers)
                for extra in _REFUSED_BODIES
            ]
            answers.append([(response.status_code, response.json()) for response in responses])
    assert answers[1] == answers[0]
    assert all(
        answer.get("errors") or answer["data"]["createSession"]["userErrors"]
        for _status, answer in answers[0]
    )
    # The service's refusals were compiled; the variables' went to Strawberry.
    assert count_compiled[0] == 2
    assert await app_state.service.count() == 2

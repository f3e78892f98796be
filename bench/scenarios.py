"""The request scenarios of `bench.compare`: what each server is sent, and how a sample of its
answers is checked against the database before the timed run.

Four servers answer: the raw baseline (bench/raw_server.py), PostGraphile, and ours over
GraphQL and over REST (one process). Each scenario has one request per server, asking for the
same rows and fields in that server's own terms:

  by-id   one session by id (id, title, branch, inboxStatus, messages, parentId), the ids cycled
          through a sample of the table
  list    the 50 newest sessions, over GraphQL with their parent's title (REST has none)
  create  a session with about 550 bytes of messages, its title and branch unique per request
          (our namer makes them from the first message's first words, which hold the tag;
          PostGraphile is sent them; the raw server makes its own)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from bench.load import TAG, Load

RAW = "raw"
POSTGRAPHILE = "postgraphile"
GRAPHQL = "graphql"
REST = "rest"
SERVERS = (RAW, POSTGRAPHILE, GRAPHQL, REST)
SERVER_TITLES = {
    RAW: "raw baseline",
    POSTGRAPHILE: "PostGraphile 5.1.5",
    GRAPHQL: "session-inbox GraphQL",
    REST: "session-inbox REST",
}
BY_ID, LIST, CREATE = "by-id", "list", "create"
SCENARIOS = (BY_ID, LIST, CREATE)
SCENARIO_TITLES = {
    BY_ID: "one session by id (id, title, branch, inboxStatus, messages, parentId)",
    LIST: "50 newest sessions with `parent { title }`",
    CREATE: "create (about 550 bytes of messages)",
}
PAGE = 50
CREATE_REPO = "bench/create"
MESSAGES = [
    {
        "role": "user",
        "content": f"Job {TAG} fix the flaky checkout test: it fails about one run in ten on CI "
        "since the last dependency bump.",
    },
    {
        "role": "assistant",
        "content": "Looking at src/checkout/fixtures.py: the checkout fixture shares one "
        "database connection between tests, so a test that rolls back undoes the next one's "
        "setup. I will give each test its own connection and add a regression test.",
    },
    {
        "role": "user",
        "content": "Sounds good. Keep the fixture's public name, other suites import it, and "
        "run the whole checkout suite twice in random order.",
    },
]

_SESSION_FIELDS = "title branch inboxStatus messages"
OURS_BY_ID = f"query Session($id: UUID!) {{ session(id: $id) {{ id {_SESSION_FIELDS} parentId }} }}"
PGL_BY_ID = (
    "query Session($id: UUID!) "
    f"{{ sessionByRowId(rowId: $id) {{ rowId {_SESSION_FIELDS} parent }} }}"
)
OURS_LIST = (
    f"{{ sessions(first: {PAGE}) "
    f"{{ nodes {{ id {_SESSION_FIELDS} parentId parent {{ title }} }} }} }}"
)
PGL_LIST = (
    f"{{ allSessions(first: {PAGE}, orderBy: CREATED_AT_DESC) "
    f"{{ nodes {{ rowId {_SESSION_FIELDS} parent sessionByParent {{ title }} }} }} }}"
)
OURS_CREATE = (
    "mutation Create($input: CreateSessionInput!) { createSession(input: $input) "
    "{ session { id title branch } userErrors { code message } } }"
)
PGL_CREATE = (
    "mutation Create($input: CreateSessionInput!) "
    "{ createSession(input: $input) { session { rowId title branch } } }"
)


# What a GraphQL answer holding a session has: checked by wrk's script without parsing, and
# spaced as the server spaces its JSON (PostgreSQL's json puts " : " between a key and its value).
TITLE = '"title"'


def _graphql(query: str, variables: Mapping[str, Any] | None = None) -> str:
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    return orjson.dumps(payload).decode()


def loads(ids: Sequence[str]) -> dict[tuple[str, str], Load]:
    """Every (scenario, server) request, the by-id ones cycling through `ids`."""
    messages = MESSAGES
    return {
        (BY_ID, RAW): Load("GET", f"/sessions/{TAG}", tags=ids),
        (BY_ID, REST): Load("GET", f"/sessions/{TAG}", tags=ids),
        (BY_ID, GRAPHQL): Load("POST", "/graphql", _graphql(OURS_BY_ID, {"id": TAG}), ids, TITLE),
        (BY_ID, POSTGRAPHILE): Load(
            "POST", "/graphql", _graphql(PGL_BY_ID, {"id": TAG}), ids, TITLE
        ),
        (LIST, RAW): Load("GET", f"/sessions?limit={PAGE}"),
        (LIST, REST): Load("GET", f"/sessions?limit={PAGE}"),
        (LIST, GRAPHQL): Load("POST", "/graphql", _graphql(OURS_LIST), must=TITLE),
        (LIST, POSTGRAPHILE): Load("POST", "/graphql", _graphql(PGL_LIST), must=TITLE),
        (CREATE, RAW): Load("POST", "/sessions", _rest_create(messages)),
        (CREATE, REST): Load("POST", "/sessions", _rest_create(messages)),
        (CREATE, GRAPHQL): Load(
            "POST",
            "/graphql",
            _graphql(
                OURS_CREATE,
                {"input": {"repo": CREATE_REPO, "targetBranch": "main", "messages": messages}},
            ),
            must='"userErrors":[]',
        ),
        (CREATE, POSTGRAPHILE): Load(
            "POST",
            "/graphql",
            _graphql(
                PGL_CREATE,
                {
                    "input": {
                        "session": {
                            "repo": CREATE_REPO,
                            "targetBranch": "main",
                            "title": f"Job {TAG} fix the flaky checkout test",
                            "branch": f"job-{TAG}-fix-the-flaky",
                            "messages": messages,
                        }
                    }
                },
            ),
            must=TITLE,
        ),
    }


def _rest_create(messages: Any) -> str:
    body = {"repo": CREATE_REPO, "target_branch": "main", "messages": messages}
    return orjson.dumps(body).decode()


def message_bytes() -> int:
    """The size of a create's `messages`, as sent (a tag of 18 characters)."""
    return len(orjson.dumps(MESSAGES).replace(TAG.encode(), b"x" * 18))


@dataclass(frozen=True, slots=True)
class Truth:
    """What the database holds, to check answers against: the title and parent of each
    sampled session and of the newest page's, their parents' titles, and the newest page's
    ids."""

    sessions: Mapping[str, tuple[str, str | None]]
    titles: Mapping[str, str]
    newest: Sequence[str]


# A row of an answer, in common terms: id, title, parent id, parent title (when asked).
Row = tuple[str, str, str | None, str | None]
_MISSING = "(not asked)"


def _ours_row(node: Mapping[str, Any]) -> Row:
    parent = node.get("parent", {"title": _MISSING})
    return node["id"], node["title"], node["parentId"], parent and parent["title"]


def _pgl_row(node: Mapping[str, Any]) -> Row:
    parent = node.get("sessionByParent", {"title": _MISSING})
    return node["rowId"], node["title"], node["parent"], parent and parent["title"]


def _rest_row(session: Mapping[str, Any]) -> Row:
    return session["id"], session["title"], session["parent"], _MISSING


def _read_rows(server: str, scenario: str, body: Any) -> list[Row]:
    """The sessions of a read's answer, in common terms."""
    if server in (RAW, REST):
        sessions = [body["session"]] if scenario == BY_ID else body["sessions"]
        return [_rest_row(s) for s in sessions]
    data = body["data"]
    if server == GRAPHQL:
        nodes = [data["session"]] if scenario == BY_ID else data["sessions"]["nodes"]
        return [_ours_row(n) for n in nodes]
    nodes = [data["sessionByRowId"]] if scenario == BY_ID else data["allSessions"]["nodes"]
    return [_pgl_row(n) for n in nodes]


def _expected(row: Row, truth: Truth) -> Row:
    title, parent = truth.sessions.get(row[0], ("(not in the database)", None))
    parent_title = _MISSING if row[3] == _MISSING else parent and truth.titles.get(parent)
    return row[0], title, parent, parent_title


def check_read(server: str, scenario: str, tag: str, status: int, body: Any, truth: Truth) -> str:
    """Why a read's answer is wrong, or "" when it is right."""
    if status != 200:
        return f"HTTP {status}: {str(body)[:200]}"
    if isinstance(body, dict) and body.get("errors"):
        return f"errors: {str(body['errors'])[:200]}"
    try:
        rows = _read_rows(server, scenario, body)
    except (KeyError, TypeError) as exc:
        return f"unexpected answer ({exc!r}): {str(body)[:200]}"
    if scenario == BY_ID and [row[0] for row in rows] != [tag]:
        return f"asked for {tag}, got {[row[0] for row in rows]}"
    if scenario == LIST and [row[0] for row in rows] != list(truth.newest):
        return f"not the {PAGE} newest sessions: {[row[0] for row in rows][:3]}…"
    for row in rows:
        if row != (want := _expected(row, truth)):
            return f"got {row}, the database holds {want}"
    return ""


def created_id(server: str, status: int, body: Any) -> tuple[str | None, str]:
    """The id of the session a create's answer says it made, or why there is none."""
    try:
        if server in (RAW, REST):
            if status != 201:
                return None, f"HTTP {status}: {str(body)[:200]}"
            return str(body["id"]), ""
        if status != 200 or body.get("errors"):
            return None, f"HTTP {status}: {str(body)[:200]}"
        payload = body["data"]["createSession"]
        if server == GRAPHQL:
            if payload["userErrors"]:
                return None, f"userErrors: {payload['userErrors']}"
            return str(payload["session"]["id"]), ""
        return str(payload["session"]["rowId"]), ""
    except (KeyError, TypeError) as exc:
        return None, f"unexpected answer ({exc!r}): {str(body)[:200]}"

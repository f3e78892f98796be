"""Schemathesis over the served `/openapi.json`: every operation, every check and every phase
(examples, coverage, fuzzing, stateful), in-process over ASGI against the real application on
each engine, then the stored sessions' invariants.

Schemathesis's own engine runs it (what `schemathesis run` does) rather than its pytest
integration: the stateful phase, where `use_after_free` and `ensure_resource_availability` have
something to check, only runs there (and `from_fixture` does not work with pytest 9). A run is
reproducible (fixed seed, deterministic generation, no example database) and bounded: EXAMPLES
per operation and phase, STATEFUL_STEPS per stateful scenario."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from schemathesis.checks import CheckContext, positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure
from schemathesis.core.transport import Response
from schemathesis.engine import Status, from_schema
from schemathesis.engine.events import FatalError, NonFatalError, ScenarioFinished
from schemathesis.engine.recorder import Interaction
from schemathesis.generation.case import Case
from schemathesis.openapi import from_asgi
from schemathesis.python import asgi
from starlette.applications import Starlette

from app.naming.names import is_valid_branch, is_valid_title
from tests.fuzz.conftest import AUTHORIZATION

EXAMPLES = 20
STATEFUL_STEPS = 10
SEED = 9
# How much of an answer's body a failure shows.
ANSWER_SHOWN = 300

# `positive_data_acceptance` is replaced by `accepts_what_the_contract_accepts` below.
# `object_level_authorization` needs two identities to compare; every configured token has the
# same rights (the contract has no owners), so it has nothing to check and stays off.
# `ignored_auth` stays on: it checks that what the document says needs a token does.
EXCLUDED_CHECKS = ("object_level_authorization", "positive_data_acceptance")

# Refusals of schema-valid requests that the contract prescribes and a JSON schema cannot say:
# they depend on what is stored (a parent that does not exist or would make a cycle, a stale
# version, an idempotency key used with another body).
STATE_CODES = frozenset(
    {"PARENT_NOT_FOUND", "PARENT_CYCLE", "VERSION_CONFLICT", "IDEMPOTENCY_MISMATCH"}
)


def _contract_refusal(response: Response, case: Case[Any]) -> bool:
    """Whether `response` refuses `case` for a reason the contract gives and the document
    cannot: stored state, a body `id` other than the path's (400), or a `cursor` that is no
    cursor this server made (opaque, so any string is schema-valid)."""
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        return False
    if code in STATE_CODES:
        return True
    if code != "INVALID_INPUT":
        return False
    body = case.body if isinstance(case.body, dict) else {}
    path_id = (case.path_parameters or {}).get("id")
    if response.status_code == 400 and "id" in body and body["id"] != path_id:
        return True
    if response.status_code != 422:
        return False
    return "cursor" in (case.query or {}) or _breaks_naming_rules(body)


def _breaks_naming_rules(body: dict[str, Any]) -> bool:
    """Whether `body` has a title or branch the contract's naming rules refuse. The document
    states them as patterns, but theirs name the surrogate range (`\\ud800-\\udfff`), which the
    regex engine under schemathesis 4 (jsonschema-rs, Rust) cannot compile, so it generates
    such values as valid ones without them."""
    title, branch = body.get("title"), body.get("branch")
    return (isinstance(title, str) and not is_valid_title(title)) or (
        isinstance(branch, str) and not is_valid_branch(branch)
    )


@schemathesis.check
def accepts_what_the_contract_accepts(
    ctx: CheckContext, response: Response, case: Case[Any]
) -> bool | None:
    """`positive_data_acceptance`, but for the contract's refusals of valid-looking data."""
    try:
        positive_data_acceptance(ctx, response, case)
        return None
    except Failure:
        if _contract_refusal(response, case):
            return None
        raise


def _exact(text: str | bytes) -> Any:
    """A JSON text's value with its numbers as decimals: JSON has one kind of number, so
    `1e+2` and `100` are the same value and `0.1` is not a binary fraction."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _sent_json(response: Response) -> Any:
    body = response.request.body
    if not isinstance(body, str | bytes) or not body:
        return None
    try:
        return _exact(body)
    except ValueError:
        return None


@schemathesis.check
def stores_what_it_was_sent(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """After a create (201) or a full replacement (200), the session read back holds the
    `messages` and `sbx_config` that were sent, exactly: no number rounded, no value dropped."""
    method, path = case.operation.method.upper(), case.operation.path
    sent = _sent_json(response)
    if not isinstance(sent, dict):
        return None
    if (method, path, response.status_code) == ("POST", "/sessions", 201):
        session_id = response.json()["id"]
        fields: tuple[str, ...] = ("messages",)
    elif (method, path, response.status_code) == ("PUT", "/sessions/{id}", 200):
        session_id = case.path_parameters["id"] if case.path_parameters else None
        fields = ("messages", "sbx_config")
    else:
        return None
    with asgi.get_client(case.operation.app) as client:
        read = client.get(f"/sessions/{session_id}", headers=AUTHORIZATION)
    stored = _exact(read.content)["session"]
    for name in fields:
        if stored[name] != sent.get(name):
            raise AssertionError(f"{name} sent {sent.get(name)!r}, stored {stored[name]!r}")
    return None


CONFIG: dict[str, Any] = {
    "seed": SEED,
    "headers": AUTHORIZATION,
    "suppress-health-check": ["all"],
    "generation": {"max-examples": EXAMPLES, "deterministic": True, "database": "none"},
    "checks": {"enabled": True, **{name: {"enabled": False} for name in EXCLUDED_CHECKS}},
    "phases": {"stateful": {"max-steps": STATEFUL_STEPS}},
}


def _answer(interaction: Interaction | None) -> str:
    if interaction is None or interaction.response is None:
        return "no answer"
    response = interaction.response
    return f"{response.status_code} {response.content[:ANSWER_SHOWN]!r}"


def _failures(app: Starlette) -> list[str]:
    schema = from_asgi("/openapi.json", app, config=SchemathesisConfig.from_dict(CONFIG))
    found: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, ScenarioFinished) and event.status == Status.FAILURE:
            for case_id, checks in event.recorder.checks.items():
                answer = _answer(event.recorder.interactions.get(case_id))
                found.extend(
                    f"{event.label} [{check.name}] {check.failure_info.failure.title}: "
                    f"{check.failure_info.failure.message}\n{check.failure_info.code_sample}"
                    f"\n-> {answer}"
                    for check in checks
                    if check.failure_info is not None
                )
        elif isinstance(event, NonFatalError):
            found.append(f"{event.label}: error {event.info.format()}")
        elif isinstance(event, FatalError):
            found.append(f"the engine failed: {event.exception!r}")
    return found


@pytest.mark.usefixtures("intact_database")
def test_every_operation_answers_as_documented(fuzz_app: Starlette) -> None:
    failures = _failures(fuzz_app)
    assert not failures, "\n\n".join(failures)

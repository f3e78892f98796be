"""Schemathesis over the served `/openapi.json`: every operation, every check and every phase
(examples, coverage, fuzzing, stateful), in-process over ASGI against the real application on
each engine, then the stored sessions' invariants.

Schemathesis's own engine runs it (what `schemathesis run` does) rather than its pytest
integration: the stateful phase, where `use_after_free` and `ensure_resource_availability` have
something to check, only runs there (and `from_fixture` does not work with pytest 9). A run is
reproducible (fixed seed, deterministic generation, no example database) and bounded: EXAMPLES
per operation and phase, STATEFUL_STEPS per stateful scenario."""

from __future__ import annotations

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
from starlette.applications import Starlette

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
    return response.status_code == 422 and "cursor" in (case.query or {})


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

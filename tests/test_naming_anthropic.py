"""The Anthropic namer against a fake Messages API on loopback, through the real SDK.

Every result is checked with git itself (`git check-ref-format --branch`)."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st

from app.config import ConfigError, Settings
from app.naming import (
    MESSAGE_TEXT_MAX,
    LocalNamer,
    Namer,
    Names,
    clean_title,
    is_valid_title,
    make_namer,
    slugify,
)
from app.naming.anthropic_namer import AnthropicNamer, retry_after_s
from tests.fake_anthropic import FakeAnthropic, FakeResponse, RecordedRequest
from tests.naming_checks import assert_valid

NAMER_LOGGER = "app.naming.anthropic_namer"
MESSAGES = [{"role": "user", "content": "Fix the flaky upload test in CI"}]


@pytest.fixture
def fake_anthropic() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


def anthropic_settings(fake: FakeAnthropic, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "anthropic_api_key": "sk-ant-test",
        "anthropic_base_url": fake.url,
        "naming_timeout_s": 5.0,
    }
    return Settings(**(values | overrides))


@asynccontextmanager
async def opened_namer(config: Settings) -> AsyncIterator[Namer]:
    namer, close = make_namer(config)
    try:
        yield namer
    finally:
        await close()


@pytest.fixture
async def namer(fake_anthropic: FakeAnthropic) -> AsyncIterator[Namer]:
    async with opened_namer(anthropic_settings(fake_anthropic)) as opened:
        yield opened


# The Anthropic namer: a good answer, and what it sends.


async def test_good_answer_gives_the_models_names(fake_anthropic: FakeAnthropic) -> None:
    config = anthropic_settings(fake_anthropic, anthropic_model="claude-test-model")
    fake_anthropic.enqueue(FakeResponse.tool_use("Fix flaky upload test", "fix-flaky-upload-test"))
    async with opened_namer(config) as namer:
        names = await namer.name("acme/widgets", "release-2.1", MESSAGES)

    assert names == Names("Fix flaky upload test", "fix-flaky-upload-test", "anthropic")
    assert_valid(names)
    [request] = fake_anthropic.requests
    assert request.path == "/v1/messages"
    # The key, however this SDK version sends it.
    auth = (request.headers.get("x-api-key"), request.headers.get("authorization"))
    assert auth in [("sk-ant-test", None), (None, "Bearer sk-ant-test")]
    assert request.model == "claude-test-model"
    assert request.tool_choice["type"] == "tool"
    assert request.tool_choice["name"] in [tool["name"] for tool in request.json["tools"]]
    assert "acme/widgets" in request.prompt
    assert "release-2.1" in request.prompt
    assert "Fix the flaky upload test in CI" in request.prompt


async def test_prompt_bounds_huge_message_text(namer: Namer, fake_anthropic: FakeAnthropic) -> None:
    huge = {"content": "word " * 200_000, "more": ["x" * 100_000] * 10}

    names = await namer.name("r" * 10_000, "main", huge)

    assert names.namer == "anthropic"
    [request] = fake_anthropic.requests
    assert "word word" in request.prompt
    assert len(request.prompt) < MESSAGE_TEXT_MAX + 1000
    assert len(request.body) < 2 * (MESSAGE_TEXT_MAX + 1000) + 5000


async def test_concurrent_namings_share_one_client(
    namer: Namer, fake_anthropic: FakeAnthropic
) -> None:
    results = await asyncio.gather(*(namer.name("r", "main", MESSAGES) for _ in range(20)))

    assert {names.namer for names in results} == {"anthropic"}
    assert len(fake_anthropic.requests) == 20


# Retries: only what is worth retrying, all within the deadline.

# The backoff before the first and the second retry: 0.5 s and 1 s, less up to a quarter.
FIRST_BACKOFF_MIN_S = 0.375
SECOND_BACKOFF_MIN_S = 0.75


def gaps(requests: list[RecordedRequest]) -> list[float]:
    return [later.received_at - earlier.received_at for earlier, later in pairwise(requests)]


def namer_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == NAMER_LOGGER]


@pytest.mark.parametrize("status", [429, 500, 503, 529])
async def test_rate_limit_and_server_error_are_retried_after_a_backoff(
    namer: Namer, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    fake_anthropic.enqueue(FakeResponse.error(status))

    with caplog.at_level(logging.INFO, logger=NAMER_LOGGER):
        names = await namer.name("r", "main", MESSAGES)

    assert names.namer == "anthropic"
    assert_valid(names)
    [gap] = gaps(fake_anthropic.requests)
    assert gap >= FIRST_BACKOFF_MIN_S
    # A retry that succeeds is no failure: it is told at INFO only.
    [retry] = namer_records(caplog)
    assert retry.levelno == logging.INFO
    assert f"HTTP {status}" in retry.getMessage()


@pytest.mark.parametrize(
    "headers",
    [{"retry-after": "1"}, {"retry-after": "1.0"}, {"retry-after-ms": "1000"}],
    ids=["seconds", "float-seconds", "milliseconds"],
)
async def test_rate_limit_is_retried_after_retry_after(
    namer: Namer, fake_anthropic: FakeAnthropic, headers: dict[str, str]
) -> None:
    fake_anthropic.enqueue(FakeResponse.error(429, headers=headers))

    names = await namer.name("r", "main", MESSAGES)

    assert names.namer == "anthropic"
    [gap] = gaps(fake_anthropic.requests)
    assert gap >= 0.95


async def test_three_server_errors_give_local_names_after_three_attempts(
    namer: Namer, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    fake_anthropic.default = FakeResponse.error(500)

    with caplog.at_level(logging.WARNING, logger=NAMER_LOGGER):
        names = await namer.name("r", "main", MESSAGES)

    assert names.namer == "local"
    assert_valid(names)
    first_gap, second_gap = gaps(fake_anthropic.requests)
    assert first_gap >= FIRST_BACKOFF_MIN_S
    assert second_gap >= SECOND_BACKOFF_MIN_S
    [warning] = namer_records(caplog)
    assert "HTTP 500" in warning.getMessage()
    assert "after 3 attempts" in warning.getMessage()


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (400, {}),
        (401, {}),
        (403, {}),
        (404, {}),
        (408, {}),
        (409, {}),
        (413, {}),
        (422, {}),
        # The SDK obeys `x-should-retry: true`; a request it rejected will not come right.
        (400, {"x-should-retry": "true"}),
        (409, {"x-should-retry": "true", "retry-after": "0"}),
        # Nor is what the server says not to retry.
        (529, {"x-should-retry": "false"}),
    ],
)
async def test_what_is_not_worth_retrying_is_asked_once(
    namer: Namer, fake_anthropic: FakeAnthropic, status: int, headers: dict[str, str]
) -> None:
    fake_anthropic.default = FakeResponse.error(status, headers=headers)

    names = await namer.name("r", "main", MESSAGES)

    assert names.namer == "local"
    assert_valid(names)
    assert len(fake_anthropic.requests) == 1


async def test_rejected_key_is_logged_at_error_once(
    namer: Namer, fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    fake_anthropic.default = FakeResponse.error(401, "invalid x-api-key")

    with caplog.at_level(logging.WARNING, logger=NAMER_LOGGER):
        first = await namer.name("r", "main", MESSAGES)
        second = await namer.name("r", "main", MESSAGES)

    assert first.namer == second.namer == "local"
    assert len(fake_anthropic.requests) == 2
    records = namer_records(caplog)
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING]
    assert "ANTHROPIC_API_KEY" in records[0].getMessage()
    assert "sk-ant-test" not in caplog.text


@pytest.mark.parametrize(
    ("headers", "wait_s"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:30 -0000"}, 30.0),
        ({}, None),
        ({"retry-after": "0"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "Wed, 21 Oct 2015 07:27:30 GMT"}, None),
    ],
)
def test_retry_after_is_read_in_seconds_milliseconds_or_as_a_date(
    headers: dict[str, str], wait_s: float | None
) -> None:
    now = datetime(2015, 10, 21, 7, 28, tzinfo=UTC).timestamp()

    assert retry_after_s(headers, now=now) == wait_s


# The deadline: the whole call, retries and their waits included.


async def test_server_that_never_answers_gives_local_names_by_the_deadline(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.default = FakeResponse.hang()
    config = anthropic_settings(fake_anthropic, naming_timeout_s=1.0)

    async with opened_namer(config) as namer:
        started = time.monotonic()
        names = await namer.name("r", "main", MESSAGES)
        elapsed = time.monotonic() - started

    assert names.namer == "local"
    assert_valid(names)
    assert elapsed < 1.0 + 1.0


@pytest.mark.parametrize("header", ["seconds", "milliseconds", "date"])
async def test_retry_after_beyond_the_deadline_gives_local_names_at_once(
    fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture, header: str
) -> None:
    headers = {
        "seconds": {"retry-after": "30"},
        "milliseconds": {"retry-after-ms": "30000"},
        "date": {"retry-after": email.utils.formatdate(time.time() + 30, usegmt=True)},
    }[header]
    fake_anthropic.default = FakeResponse.error(429, headers=headers)
    config = anthropic_settings(fake_anthropic, naming_timeout_s=3.0)

    async with opened_namer(config) as namer:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=NAMER_LOGGER):
            names = await namer.name("r", "main", MESSAGES)
        elapsed = time.monotonic() - started

    assert names.namer == "local"
    assert len(fake_anthropic.requests) == 1
    # Neither the 30 s nor the rest of the deadline is waited out.
    assert elapsed < 1.5
    [warning] = namer_records(caplog)
    assert "HTTP 429" in warning.getMessage()
    assert "would pass the deadline" in warning.getMessage()


async def test_backoff_beyond_the_deadline_gives_local_names_at_once(
    fake_anthropic: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    # The first backoff (at most 0.5 s) fits in 1 s, the second (at least 0.75 s) no longer does.
    fake_anthropic.default = FakeResponse.error(529)
    config = anthropic_settings(fake_anthropic, naming_timeout_s=1.0)

    async with opened_namer(config) as namer:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger=NAMER_LOGGER):
            names = await namer.name("r", "main", MESSAGES)
        elapsed = time.monotonic() - started

    assert names.namer == "local"
    assert len(fake_anthropic.requests) == 2
    assert elapsed < 1.0
    [warning] = namer_records(caplog)
    assert "would pass the deadline" in warning.getMessage()


async def test_refused_connection_is_retried_then_gives_local_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A port bound but not listening refuses connections, and stays ours during the test.
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        port = closed_port.getsockname()[1]
        config = Settings(
            anthropic_api_key="sk-ant-test",
            anthropic_base_url=f"http://127.0.0.1:{port}",
            naming_timeout_s=3.0,
        )
        async with opened_namer(config) as namer:
            started = time.monotonic()
            with caplog.at_level(logging.INFO, logger=NAMER_LOGGER):
                names = await namer.name("r", "main", MESSAGES)
            elapsed = time.monotonic() - started

    assert names.namer == "local"
    # Two retries, each after its backoff (at most 0.5 s and 1 s), well within the deadline.
    assert FIRST_BACKOFF_MIN_S + SECOND_BACKOFF_MIN_S <= elapsed < 3.0
    records = namer_records(caplog)
    assert [r.levelno for r in records] == [logging.INFO, logging.INFO, logging.WARNING]
    assert all("APIConnectionError" in r.getMessage() for r in records)
    assert "after 3 attempts" in records[-1].getMessage()


async def test_cancellation_is_not_swallowed(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.default = FakeResponse.hang()
    async with opened_namer(anthropic_settings(fake_anthropic)) as namer:
        task = asyncio.create_task(namer.name("r", "main", MESSAGES))
        await fake_anthropic.requests_arrived(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# Answers that are not usable names.


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(FakeResponse.text("Title: Fix login\nBranch: fix-login"), id="text-answer"),
        pytest.param(FakeResponse(body="Fix login, fix-login"), id="non-json-body"),
        pytest.param(FakeResponse(body={"unexpected": True}), id="not-a-message"),
        pytest.param(FakeResponse.tool_use(stop_reason="max_tokens"), id="truncated"),
        pytest.param(FakeResponse.text("I can't help.", stop_reason="refusal"), id="refusal"),
        pytest.param(FakeResponse.tool_use(title=5, branch=None), id="not-strings"),
        pytest.param(FakeResponse.tool_use(input=["a", "b"]), id="input-not-object"),
        pytest.param(FakeResponse.tool_use(title=" \t\n\u200b ", branch="x"), id="blank-title"),
        pytest.param(FakeResponse.tool_use(branch="🚀🔥"), id="emoji-branch"),
        pytest.param(FakeResponse.tool_use(branch="修复登录"), id="no-ascii-branch"),
        pytest.param(FakeResponse.tool_use(branch=""), id="empty-branch"),
    ],
)
async def test_unusable_answer_gives_local_names(
    namer: Namer,
    fake_anthropic: FakeAnthropic,
    caplog: pytest.LogCaptureFixture,
    answer: FakeResponse,
) -> None:
    fake_anthropic.enqueue(answer)

    with caplog.at_level(logging.WARNING, logger=NAMER_LOGGER):
        names = await namer.name("r", "main", MESSAGES)

    assert names == LocalNamer().name_now("r", "main", MESSAGES)
    assert_valid(names)
    assert len(fake_anthropic.requests) == 1
    assert [r.levelno for r in caplog.records if r.name == NAMER_LOGGER] == [logging.WARNING]


async def test_long_title_is_cut_to_one_short_line(
    namer: Namer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(FakeResponse.tool_use(title="Refactor\n" + "word " * 1000))

    names = await namer.name("r", "main", MESSAGES)

    assert names.namer == "anthropic"
    assert_valid(names)
    assert names.title.startswith("Refactor word word")
    assert names.title.endswith("…")


async def test_control_characters_are_removed_from_the_title(
    namer: Namer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(FakeResponse.tool_use(title="Fix\x00 the\x1b[31m \u202elogin\r\n bug"))

    names = await namer.name("r", "main", MESSAGES)

    assert names.title == "Fix the[31m login bug"
    assert_valid(names)


@pytest.mark.parametrize(
    ("proposed", "branch"),
    [
        ("../x.lock", "x-lock"),
        ("HEAD", "head"),
        ("-foo", "foo"),
        ("a b", "a-b"),
        ("feat/@{x}", "feat-x"),
        ("Fix café crème brûlée", "fix-cafe-creme-brulee"),
        ("Straße 🚀 fix", "strasse-fix"),
        ("refs/heads/main..x", "refs-heads-main-x"),
        ("one-two-three-four-five-six-seven-eight", "one-two-three-four-five-six"),
        ("x" * 500, "x" * 50),
    ],
)
async def test_proposed_branch_is_cleaned_into_words(
    namer: Namer, fake_anthropic: FakeAnthropic, proposed: str, branch: str
) -> None:
    fake_anthropic.enqueue(FakeResponse.tool_use(branch=proposed))

    names = await namer.name("r", "main", MESSAGES)

    assert names == Names("Fix login timeout", branch, "anthropic")
    assert_valid(names)


# The branch prefix.


@pytest.mark.parametrize(
    ("answer", "branch"),
    [
        (FakeResponse.tool_use(branch="fix-login"), "claude/fix-login"),
        (FakeResponse.tool_use(branch="claude/fix-login"), "claude/fix-login"),
        (FakeResponse.tool_use(branch="🚀"), "claude/fix-the-flaky-upload-test-in"),
        (FakeResponse.error(400), "claude/fix-the-flaky-upload-test-in"),
    ],
)
async def test_branch_prefix_applies_to_every_namer(
    fake_anthropic: FakeAnthropic, answer: FakeResponse, branch: str
) -> None:
    fake_anthropic.enqueue(answer)
    config = anthropic_settings(fake_anthropic, naming_branch_prefix="claude/")

    async with opened_namer(config) as namer:
        names = await namer.name("r", "main", MESSAGES)

    assert names.branch == branch
    assert_valid(names, prefix="claude/")


@pytest.mark.parametrize("prefix", ["bad..prefix/", "-x/", "a b/", "x.lock/", "p" * 51])
def test_unusable_branch_prefix_is_a_config_error(prefix: str) -> None:
    with pytest.raises(ConfigError, match="NAMING_BRANCH_PREFIX"):
        make_namer(Settings(naming_branch_prefix=prefix))


# The choice of namer.


async def test_without_a_key_the_local_namer_is_used(fake_anthropic: FakeAnthropic) -> None:
    config = Settings(anthropic_base_url=fake_anthropic.url, naming_branch_prefix="me/")

    async with opened_namer(config) as namer:
        names = await namer.name("r", "main", MESSAGES)

    assert isinstance(namer, LocalNamer)
    assert names == Names(
        "Fix the flaky upload test in CI", "me/fix-the-flaky-upload-test-in", "local"
    )
    assert fake_anthropic.requests == []


async def test_with_a_key_the_anthropic_namer_is_used(fake_anthropic: FakeAnthropic) -> None:
    async with opened_namer(anthropic_settings(fake_anthropic, naming_timeout_s=3.0)) as namer:
        assert isinstance(namer, AnthropicNamer)
        assert namer.timeout_s == 3.0
        assert namer.model == "claude-haiku-4-5"


# Property: whatever the model proposes, git accepts the branch.


@hypothesis.settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text())
async def test_anthropic_branch_is_always_valid(
    namer: Namer, fake_anthropic: FakeAnthropic, text: str
) -> None:
    fake_anthropic.default = FakeResponse.tool_use(title=text, branch=text)

    names = await namer.name("r", "main", {"content": text})

    assert_valid(names)
    if names.namer == "local":
        assert not is_valid_title(clean_title(text)) or not slugify(text)

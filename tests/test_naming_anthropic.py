"""The Anthropic namer against a fake Messages API on loopback, through the real SDK.

Every result is checked with git itself (`git check-ref-format --branch`)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
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
from app.naming.anthropic_namer import AnthropicNamer
from tests.fake_anthropic import FakeAnthropic, FakeResponse
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


@pytest.mark.parametrize("status", [500, 529])
async def test_server_error_is_retried(
    namer: Namer, fake_anthropic: FakeAnthropic, status: int
) -> None:
    fake_anthropic.enqueue(FakeResponse.error(status))

    names = await namer.name("r", "main", MESSAGES)

    assert names.namer == "anthropic"
    assert_valid(names)
    assert len(fake_anthropic.requests) == 2


async def test_rate_limit_is_retried_after_retry_after(
    namer: Namer, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.enqueue(FakeResponse.error(429, headers={"retry-after": "1"}))

    names = await namer.name("r", "main", MESSAGES)

    assert names.namer == "anthropic"
    first, second = fake_anthropic.requests
    assert second.received_at - first.received_at >= 0.95


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_client_error_is_not_retried(
    namer: Namer, fake_anthropic: FakeAnthropic, status: int
) -> None:
    fake_anthropic.default = FakeResponse.error(status)

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
    records = [r for r in caplog.records if r.name == NAMER_LOGGER]
    assert [r.levelno for r in records] == [logging.ERROR, logging.WARNING]
    assert "ANTHROPIC_API_KEY" in records[0].getMessage()
    assert "sk-ant-test" not in caplog.text


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


async def test_retry_after_beyond_the_deadline_gives_local_names_by_the_deadline(
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.default = FakeResponse.error(429, headers={"retry-after": "30"})
    config = anthropic_settings(fake_anthropic, naming_timeout_s=1.0)

    async with opened_namer(config) as namer:
        started = time.monotonic()
        names = await namer.name("r", "main", MESSAGES)
        elapsed = time.monotonic() - started

    assert names.namer == "local"
    assert elapsed < 1.0 + 1.0
    assert len(fake_anthropic.requests) == 1


async def test_unreachable_api_gives_local_names() -> None:
    # A port that was free a moment ago: connections to it are refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = Settings(
        anthropic_api_key="sk-ant-test",
        anthropic_base_url=f"http://127.0.0.1:{port}",
        naming_timeout_s=1.0,
    )

    async with opened_namer(config) as namer:
        started = time.monotonic()
        names = await namer.name("r", "main", MESSAGES)

    assert names.namer == "local"
    assert time.monotonic() - started < 1.0 + 1.0


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

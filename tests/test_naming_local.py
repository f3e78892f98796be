"""The local namer and the naming rules; git itself is the oracle for branches."""

from __future__ import annotations

import re
from typing import Any

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.naming import (
    MESSAGE_TEXT_MAX,
    LocalNamer,
    Names,
    clean_title,
    is_valid_branch,
    message_text,
    slugify,
    with_suffix,
)
from tests.naming_checks import assert_valid, git_accepts_branch

# The local namer and the rules.


def test_local_namer_names_from_the_first_message_text() -> None:
    messages = [
        {"role": "user", "id": "msg_1", "content": [{"type": "text", "text": "Add dark mode"}]},
        {"role": "assistant", "content": "Sure, starting with the settings page."},
    ]

    names = LocalNamer().name_now("r", "main", messages)

    assert names == Names("Add dark mode", "add-dark-mode", "local")


def test_local_namer_is_deterministic_without_usable_text() -> None:
    first = LocalNamer().name_now("acme/widgets", "main", {"content": "🚀"})
    second = LocalNamer().name_now("acme/widgets", "main", {"content": "🚀"})
    empty = LocalNamer().name_now("acme/widgets", "main", None)

    assert first == second
    assert re.fullmatch(r"session-[0-9a-f]{8}", first.branch)
    assert empty.title == "Work on acme/widgets (main)"
    assert_valid(first)
    assert_valid(empty)


def test_message_text_reads_any_depth_and_is_bounded() -> None:
    deep: Any = "deep text"
    for _ in range(100_000):
        deep = [deep]

    assert message_text(deep) == "deep text"
    assert len(message_text(["a" * 10_000, "b"])) == MESSAGE_TEXT_MAX
    assert message_text({"content": "  hi ", "role": "user", "n": 3, "ok": True}) == "hi"


def test_clean_title_and_slugify() -> None:
    assert clean_title("  a\tb\n\nc  ") == "a b c"
    assert clean_title("\u200b\x00 ") == ""
    assert len(clean_title("x" * 500)) == 80
    assert slugify("Fix the Login bug!") == "fix-the-login-bug"
    assert slugify("🚀") == ""


def test_with_suffix_keeps_the_branch_valid() -> None:
    for branch in ["fix-login", "claude/" + "x" * 93, "a" * 100]:
        suffixed = with_suffix(branch)
        assert suffixed != branch
        assert len(suffixed) <= 100
        assert is_valid_branch(suffixed)
        assert git_accepts_branch(suffixed)


@pytest.mark.parametrize(
    "name",
    ["HEAD", "-foo", "@", "a b", "x.lock", "a/.b", "a..b", "a/", "ab.", "@{-1}", "a//b", "\ud800"],
)
def test_is_valid_branch_refuses_what_git_refuses(name: str) -> None:
    assert not is_valid_branch(name)


# Properties: whatever the text, git accepts the branch.


@hypothesis.settings(max_examples=200, deadline=None)
@given(text=st.text(), repo=st.text(min_size=1))
def test_local_branch_is_always_valid(text: str, repo: str) -> None:
    for messages in ({"content": text}, [{"role": "user", "content": text}, text]):
        names = LocalNamer("claude/").name_now(repo, "main", messages)
        assert_valid(names, prefix="claude/")

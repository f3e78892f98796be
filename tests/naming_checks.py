"""Checks on names shared by the naming tests; git itself is the oracle for branches."""

from __future__ import annotations

import re
import subprocess

from app.naming import Names, is_valid_title


def git_accepts_branch(name: str) -> bool:
    result = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, check=False
    )
    return result.returncode == 0


def assert_valid(names: Names, prefix: str = "") -> None:
    assert is_valid_title(names.title), names.title
    assert "\n" not in names.title
    assert len(names.title) <= 80
    assert len(names.branch) <= 100
    assert re.fullmatch(re.escape(prefix) + r"[a-z0-9]+(-[a-z0-9]+)*", names.branch), names.branch
    assert git_accepts_branch(names.branch), names.branch

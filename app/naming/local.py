"""The local namer: names from the messages' own words, with no network."""

from __future__ import annotations

import hashlib
from typing import Any

from app.naming.names import (
    BRANCH_MAX,
    Names,
    clean_title,
    is_valid_branch,
    message_text,
    slugify,
    with_prefix,
)


class LocalNamer:
    """Deterministic names: the title is the first line of the message text, the branch its
    first words. It never fails, so it is the fallback of every other namer."""

    # It does no I/O: a creation asks it first and reads nothing before its insert.
    instant = True

    def __init__(self, branch_prefix: str = "") -> None:
        # A prefix that cannot start a branch would make every generated name invalid.
        if len(branch_prefix) > BRANCH_MAX // 2 or (
            branch_prefix and not is_valid_branch(with_prefix(branch_prefix, "x"))
        ):
            raise ValueError(
                f"branch prefix {branch_prefix!r} must start a valid git branch name "
                f"and be at most {BRANCH_MAX // 2} characters"
            )
        self.branch_prefix = branch_prefix

    async def name(self, repo: str, target_branch: str, messages: Any) -> Names:
        return self.name_now(repo, target_branch, messages)

    def name_now(self, repo: str, target_branch: str, messages: Any) -> Names:
        """`name`, synchronously: the local namer does no I/O."""
        text = message_text(messages)
        first_line = next((line for line in text.splitlines() if line.strip()), "")
        title = clean_title(first_line) or clean_title(f"Work on {repo} ({target_branch})")
        slug = slugify(first_line) or slugify(text)
        if not slug:
            # Nothing usable in the text: a stable name from the inputs.
            digest = hashlib.sha256(
                f"{repo}\0{target_branch}\0{text}".encode(errors="surrogatepass")
            ).hexdigest()
            slug = f"session-{digest[:8]}"
        return Names(title=title, branch=with_prefix(self.branch_prefix, slug), namer="local")

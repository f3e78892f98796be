"""What must hold of the stored sessions whatever clients sent: `violations` lists what does not.

Each rule is the contract's (`../shared/CONTRACT.md`, "The stored session" and "Naming"): a
valid title and branch, a branch used once per repo, a non-empty repo and target branch, a known
`inbox_status`, `version` at least 1, and a parent chain that ends (no session is its own
ancestor) at an existing session."""

from __future__ import annotations

from collections import Counter
from typing import Any

from app.db import Database
from app.naming.names import is_valid_branch, is_valid_title
from app.tables import InboxStatus

_STATUSES = frozenset(status.value for status in InboxStatus)


def _session_violations(row: dict[str, Any]) -> list[str]:
    found: list[str] = []
    where = f"session {row['id']}"
    if not isinstance(row["title"], str) or not is_valid_title(row["title"]):
        found.append(f"{where}: invalid title {row['title']!r}")
    if not isinstance(row["branch"], str) or not is_valid_branch(row["branch"]):
        found.append(f"{where}: invalid branch {row['branch']!r}")
    for column in ("repo", "target_branch"):
        if not isinstance(row[column], str) or not row[column]:
            found.append(f"{where}: empty {column} {row[column]!r}")
    if row["inbox_status"] not in _STATUSES:
        found.append(f"{where}: unknown inbox_status {row['inbox_status']!r}")
    if not isinstance(row["version"], int) or row["version"] < 1:
        found.append(f"{where}: version {row['version']!r} below 1")
    return found


def _ancestry_violations(parents: dict[str, str | None]) -> list[str]:
    found: list[str] = []
    for start, parent in parents.items():
        if parent is not None and parent not in parents:
            found.append(f"session {start}: parent {parent} does not exist")
    for start in parents:
        seen = {start}
        current = parents[start]
        while current is not None and current in parents:
            if current in seen:
                found.append(f"session {start}: its parent chain returns to {current}")
                break
            seen.add(current)
            current = parents[current]
    return found


async def violations(db: Database) -> list[str]:
    """Every broken invariant of the `session` table, one line each; empty when all hold."""
    rows: list[dict[str, Any]] = await db.fetch(
        "SELECT id, repo, target_branch, title, branch, inbox_status, parent, version FROM session"
    )
    found: list[str] = []
    for row in rows:
        found.extend(_session_violations(row))
    branches = Counter((row["repo"], row["branch"]) for row in rows)
    found.extend(
        f"branch {branch!r} used {count} times in repo {repo!r}"
        for (repo, branch), count in branches.items()
        if count > 1
    )
    parents = {
        str(row["id"]): None if row["parent"] is None else str(row["parent"]) for row in rows
    }
    found.extend(_ancestry_violations(parents))
    return found

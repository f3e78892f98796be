"""The earlier service's shell client, played against a real server process: curl for every
request, and the id of a new session taken with `grep -o '"id":"[^"]*"' | cut -d'"' -f4`, so
the create answer may hold no other `"id"`. The script checks each status as it goes; the test
then holds every body it kept to the contract, exactly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import orjson

from app.config import Settings
from app.db import Database
from bench.server import serve

SCRIPT = r"""
set -euo pipefail
: "${BASE:?the address of the server}" "${OUT:?a directory for the answers}"

# call NAME STATUS CURL_ARGS...: one request; its body goes to $OUT/NAME.json, its headers
# to $OUT/NAME.headers, and the script stops unless the answer has the expected STATUS.
call() {
    local name=$1 expected=$2
    shift 2
    local status
    status=$(curl -sS --max-time 10 -o "$OUT/$name.json" -D "$OUT/$name.headers" \
        -w '%{http_code}' "$@")
    echo "$name: expect HTTP $expected, got $status: $(cat "$OUT/$name.json")"
    if [[ $status != "$expected" ]]; then
        echo "$name: FAILED" >&2
        exit 1
    fi
}

# new_id NAME: the id in the create answer NAME, taken as the earlier client took it.
new_id() {
    local id
    id=$(grep -o '"id":"[^"]*"' <"$OUT/$1.json" | cut -d'"' -f4) || true
    echo "$1: expect one id, got: $id" >&2
    if ! [[ $id =~ ^[0-9a-f-]{36}$ ]]; then
        echo "$1: FAILED, the answer must hold exactly one \"id\", a UUID" >&2
        exit 1
    fi
    echo "$id"
}

JSON='Content-Type: application/json'

call 01-create 201 -X POST "$BASE/sessions" -H "$JSON" \
    -d '{"repo": "acme/app", "target_branch": "main", "messages": {"content": "fix the login"}}'
ID=$(new_id 01-create)

call 02-list 200 "$BASE/sessions"
call 03-read 200 "$BASE/sessions/$ID"

call 04-put 200 -X PUT "$BASE/sessions/$ID" -H "$JSON" -d '{
    "id": "'"$ID"'",
    "messages": {"content": "fix the login", "done": true},
    "inbox_status": "Active",
    "sbx_config": {"image": "python:3.11"},
    "parent": null
}'
call 05-read 200 "$BASE/sessions/$ID"

call 06-create-other 201 -X POST "$BASE/sessions" -H "$JSON" \
    -d '{"repo": "acme/app", "target_branch": "main", "messages": {"content": "throwaway"}}'
OTHER=$(new_id 06-create-other)
call 07-delete-other 200 -X DELETE "$BASE/sessions/$OTHER"
call 08-read-deleted 404 "$BASE/sessions/$OTHER"

call 09-read-first 200 "$BASE/sessions/$ID"
echo "all steps answered as expected"
"""


def answer(out: Path, step: str) -> Any:
    return orjson.loads((out / f"{step}.json").read_bytes())


def headers(out: Path, step: str) -> dict[str, str]:
    """The header lines curl kept for `step`, by lower-case name."""
    lines = (out / f"{step}.headers").read_text().splitlines()[1:]
    pairs = (line.split(":", 1) for line in lines if ":" in line)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def run_shell_client(base_url: str, tmp_path: Path) -> Path:
    out = tmp_path / "answers"
    out.mkdir()
    script = tmp_path / "client.sh"
    script.write_text(SCRIPT)
    env = {"PATH": os.environ["PATH"], "BASE": base_url, "OUT": str(out)}
    result = subprocess.run(
        ["bash", str(script)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return out


def test_the_earlier_shell_client_runs_unchanged(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    # `db` empties the table the server process uses, so the list holds only this script's.
    with serve("ours", settings.database_url) as server:
        out = run_shell_client(server.base_url, tmp_path)

    created = answer(out, "01-create")
    assert created == {
        "success": True,
        "message": "Session created successfully",
        "id": created["id"],
    }
    session_id = created["id"]
    assert headers(out, "01-create")["location"] == f"/sessions/{session_id}"
    assert headers(out, "01-create")["etag"] == '"1"'

    listed = answer(out, "02-list")
    assert set(listed) == {"sessions"}
    assert [s["id"] for s in listed["sessions"]] == [session_id]

    read = answer(out, "03-read")
    assert set(read) == {"session"}
    assert read["session"] == listed["sessions"][0]
    expected = {
        "id": session_id,
        "repo": "acme/app",
        "target_branch": "main",
        "messages": {"content": "fix the login"},
        "inbox_status": "active",
        "sbx_config": None,
        "parent": None,
        "version": 1,
    }
    assert {key: read["session"][key] for key in expected} == expected

    assert answer(out, "04-put") == {"success": True, "message": "Session updated successfully"}
    assert headers(out, "04-put")["etag"] == '"2"'

    replaced = answer(out, "05-read")["session"]
    expected |= {
        "messages": {"content": "fix the login", "done": True},
        "sbx_config": {"image": "python:3.11"},
        "version": 2,
    }
    assert {key: replaced[key] for key in expected} == expected
    # Absent from the PUT, so kept as they were.
    assert (replaced["title"], replaced["branch"]) == (
        read["session"]["title"],
        read["session"]["branch"],
    )

    other = answer(out, "06-create-other")
    assert set(other) == {"success", "message", "id"}
    assert other["id"] != session_id
    assert answer(out, "07-delete-other") == {
        "success": True,
        "message": "Session deleted successfully",
    }
    assert answer(out, "08-read-deleted") == {
        "err": "Not Found",
        "msg": "Session not found",
        "code": "NOT_FOUND",
    }
    assert answer(out, "09-read-first") == {"session": replaced}

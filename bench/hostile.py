"""Hostile GraphQL documents against a real server: how fast each is answered, and the server's
resident memory before and after a run of them.

    .venv/bin/python -m bench.hostile                 # 200 of each, fresh PostgreSQL database
    .venv/bin/python -m bench.hostile --requests 50 --markdown

(a) the quadratic document of issue 9, `parent { parent { id } }` 284 times, with a fresh UUID
    each time so no cache helps; refused by MAX_SELECTION_FIELDS;
(b) distinct documents of just under MAX_BODY_BYTES (1 MiB), a small query padded with
    comments (free under MAX_TOKENS): answered, and none kept by the document cache;
(c) a page of 100 sessions' `ancestors` over a 1,000-deep chain, which the cost rule used to let
    through (94,000 objects in 3.5 s); refused as QUERY_TOO_COMPLEX. Beside it, for comparison,
    one session's `ancestors` over the same chain, which is allowed and answered.

Each is sent `--requests` times, one at a time, by one client."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from bench import seed
from bench.server import MB, cpu_seconds, rss, serve

CHAIN = 1000
BODY_LIMIT = 1_048_576


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    answer: str
    p50_ms: float
    max_ms: float
    # The server's CPU per request: what the timings would be on an idle machine.
    cpu_ms: float
    rss_before_mb: float
    rss_after_mb: float


def quadratic() -> str:
    body = " ".join(["parent { parent { id } }"] * 284)
    return f'{{ session(id: "{uuid.uuid4()}") {{ {body} }} }}'


def padded(n: int) -> str:
    """A distinct document whose JSON body stays just under the body limit."""
    line = "#" + "x" * 1020 + "\n"  # 1,023 bytes, 1,024 in JSON (the newline as \\n)
    head = f"{{ sessions(first: 1) {{ nodes {{ id }} }} }} # {n} {uuid.uuid4()}\n"
    lines = (BODY_LIMIT - 2_000 - len(head)) // (len(line) + 1)
    return head + line * lines


def ancestors_of_a_page() -> str:
    return "{ sessions(first: 100) { nodes { id ancestors { id title } } } }"


async def build_chain(http: httpx.AsyncClient) -> str:
    """A chain of CHAIN sessions, each the parent of the next; the id of the last."""
    parent: str | None = None
    for _ in range(CHAIN):
        body = {"repo": "bench/hostile", "target_branch": "main", "parent": parent}
        response = await http.post("/sessions", json=body)
        response.raise_for_status()
        parent = response.json()["id"]
    assert parent is not None
    return parent


def _summary(errors: list[dict[str, object]] | None) -> str:
    if not errors:
        return "answered"
    extensions = errors[0].get("extensions")
    code = extensions.get("code") if isinstance(extensions, dict) else None
    return f"refused ({code})" if code else f"refused: {errors[0].get('message')}"


async def measure(
    http: httpx.AsyncClient,
    pid: int,
    name: str,
    document: Callable[[int], str],
    requests: int,
    variables: dict[str, str] | None = None,
) -> Run:
    before = rss(pid)
    cpu_before = cpu_seconds(pid)
    times: list[float] = []
    answers: set[str] = set()
    for n in range(requests):
        payload = {"query": document(n), "variables": variables or {}}
        start = time.perf_counter()
        response = await http.post("/graphql", json=payload)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code < 500, response.text[:500]
        answers.add(_summary(response.json().get("errors")))
    after = rss(pid)
    cpu = (cpu_seconds(pid) - cpu_before) * 1000 / requests
    times.sort()
    return Run(
        name,
        ", ".join(sorted(answers)),
        round(times[len(times) // 2], 1),
        round(times[-1], 1),
        round(cpu, 1),
        round(before / MB, 1),
        round(after / MB, 1),
    )


async def run_all(base_url: str, pid: int, requests: int) -> list[Run]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as http:
        leaf = await build_chain(http)
        one = "query ($id: UUID!) { session(id: $id) { ancestors { id title } } }"
        return [
            await measure(http, pid, "(a) quadratic, fresh UUID", lambda _n: quadratic(), requests),
            await measure(http, pid, "(b) distinct ~1 MB documents", padded, requests),
            # Again: whether the memory the first run took is kept for reuse or keeps growing.
            await measure(http, pid, "(b) again, other documents", padded, requests),
            await measure(
                http,
                pid,
                "(c) ancestors of a page of 100, 1,000-deep chain",
                lambda _n: ancestors_of_a_page(),
                requests,
            ),
            await measure(
                http,
                pid,
                "(c') one session's 1,000 ancestors (allowed)",
                lambda _n: one,
                requests,
                {"id": leaf},
            ),
        ]


def print_runs(runs: list[Run], *, markdown: bool) -> None:
    header = (
        "document",
        "answer",
        "p50 ms",
        "max ms",
        "server CPU ms",
        "RSS before MB",
        "RSS after MB",
    )
    rows: list[tuple[object, ...]] = [
        (r.name, r.answer, r.p50_ms, r.max_ms, r.cpu_ms, r.rss_before_mb, r.rss_after_mb)
        for r in runs
    ]
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
        for row in rows:
            print("| " + " | ".join(str(cell) for cell in row) + " |")
    else:
        for row in [tuple[object, ...](header), *rows]:
            print("  ".join(str(cell).ljust(18) for cell in row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.hostile", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--requests", type=int, default=200, help="of each document")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    url = f"{seed.POSTGRES_SERVER}/bench_hostile_{os.getpid()}"
    try:
        asyncio.run(seed.fresh_postgres(url.rsplit("/", 1)[1]))
        with serve("ours", url, log_level="warning") as server:
            runs = asyncio.run(run_all(server.base_url, server.pid, args.requests))
    finally:
        asyncio.run(seed.drop(url))
    print_runs(runs, markdown=args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

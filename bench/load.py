"""wrk, driven by a Lua script that checks every answer.

A `Load` is one kind of request. `TAG` in its path or body is replaced, request by request,
by the next of its sample `tags` (cycled), or when it has none by a tag unique to the run
(`<prefix>-<thread>-<counter>`, which keeps created titles and branches unique). Every
answer is checked in the script: it must be a 2xx, hold `must` when given, and hold no
`"errors":` (a GraphQL error answer is a 200). The script prints one `BENCH` line with the
counts and latencies, parsed into a `Run`."""

from __future__ import annotations

import re
import subprocess
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TAG = "@TAG@"
# Seconds wrk waits for one answer before counting a timeout (its default is 2).
TIMEOUT_S = 10

LUA = """
local method = %(method)s
local path_parts = {%(path_parts)s}
local body_parts = %(body_parts)s
local tags = {%(tags)s}
local prefix = %(prefix)s
local must = %(must)s
local headers = {%(headers)s}

local threads = {}
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

responses = 0
failures = 0
sample = ""
local counter = 0

function request()
  counter = counter + 1
  local tag
  if #tags > 0 then
    tag = tags[(counter %% #tags) + 1]
  else
    tag = prefix .. "-" .. thread_id .. "-" .. counter
  end
  local body = nil
  if body_parts ~= nil then body = table.concat(body_parts, tag) end
  return wrk.format(method, table.concat(path_parts, tag), headers, body)
end

function response(status, headers, body)
  responses = responses + 1
  local bad = status < 200 or status > 299
    or (must ~= nil and string.find(body, must, 1, true) == nil)
    or string.find(body, '"errors":', 1, true) ~= nil
  if bad then
    failures = failures + 1
    if sample == "" then sample = status .. " " .. string.sub(body, 1, 300) end
  end
end

function done(summary, latency, requests)
  local r, f, s = 0, 0, ""
  for _, t in ipairs(threads) do
    r = r + t:get("responses")
    f = f + t:get("failures")
    if s == "" then s = t:get("sample") end
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%%.0f duration_us=%%.0f responses=%%.0f failures=%%.0f connect=%%.0f " ..
    "read=%%.0f write=%%.0f timeout=%%.0f p50_us=%%.0f p99_us=%%.0f\\n",
    summary.requests, summary.duration, r, f, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
  io.write("BENCH-SAMPLE " .. (string.gsub(s, "\\n", " ")) .. "\\n")
end
"""
_BENCH = re.compile(r"^BENCH (.*)$", re.MULTILINE)
_SAMPLE = re.compile(r"^BENCH-SAMPLE ?(.*)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Load:
    method: str
    path: str
    body: str | None = None
    tags: Sequence[str] = ()
    must: str | None = None

    def render(self, tag: str) -> tuple[str, str, str | None]:
        """The request wrk sends for `tag`: method, path and body."""
        body = None if self.body is None else self.body.replace(TAG, tag)
        return self.method, self.path.replace(TAG, tag), body


@dataclass(frozen=True, slots=True)
class Run:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    # Answers the script refused, plus wrk's socket errors (timeouts included).
    failures: int
    sample: str

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _lua_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _lua_list(items: Sequence[str]) -> str:
    return ", ".join(_lua_string(item) for item in items)


def script(load: Load, headers: Mapping[str, str], prefix: str) -> str:
    """The Lua script that sends `load` and checks its answers."""
    body_parts = "nil" if load.body is None else "{" + _lua_list(load.body.split(TAG)) + "}"
    return LUA % {
        "method": _lua_string(load.method),
        "path_parts": _lua_list(load.path.split(TAG)),
        "body_parts": body_parts,
        "tags": _lua_list(load.tags),
        "prefix": _lua_string(prefix),
        "must": "nil" if load.must is None else _lua_string(load.must),
        "headers": ", ".join(
            f"[{_lua_string(key)}] = {_lua_string(value)}" for key, value in headers.items()
        ),
    }


def unique_prefix() -> str:
    """A prefix no earlier run used: a letter and eight hex digits."""
    return f"r{uuid.uuid4().hex[:8]}"


def wrk(
    base_url: str,
    load: Load,
    headers: Mapping[str, str],
    *,
    seconds: int,
    connections: int,
    prefix: str | None = None,
) -> Run:
    """`load` against `base_url` with one wrk thread and `connections` connections."""
    with tempfile.TemporaryDirectory(prefix="session-inbox-bench-") as workdir:
        path = Path(workdir) / "load.lua"
        path.write_text(script(load, headers, prefix or unique_prefix()))
        command = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            f"--timeout={TIMEOUT_S}s",
            "-s",
            str(path),
            base_url,
        ]
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False
        )
    found = _BENCH.search(completed.stdout)
    if completed.returncode != 0 or found is None:
        output = (completed.stderr or completed.stdout).strip()
        return Run(0, float(seconds), 0.0, 0.0, 1, f"wrk failed: {output[:300]}")
    values = {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", found.group(1))}
    sample = _SAMPLE.search(completed.stdout)
    socket_errors = sum(values[key] for key in ("connect", "read", "write", "timeout"))
    failures = int(values["failures"] + socket_errors)
    text = sample.group(1).strip() if sample else ""
    if socket_errors and not text:
        text = completed.stdout.strip().splitlines()[-3]
    return Run(
        requests=int(values["requests"]),
        seconds=values["duration_us"] / 1e6,
        p50_ms=values["p50_us"] / 1000,
        p99_ms=values["p99_us"] / 1000,
        failures=failures,
        sample=text,
    )

"""What parsing and checking a REST create body costs: msgspec (what the server uses) against
pydantic v2 with the same fields, limits and checks, in one run. (Piccolo's
`create_pydantic_model` cannot stand in: it types JSONB columns as JSON *text*, so a body whose
`messages` is an array is refused.)

    python -m bench.decode                  # 20,000 bodies of each kind, 5 rounds

Each round decodes the same bodies with both, alternating which goes first; the ratio is the
median of the per-round ratios pydantic/msgspec. Both run the declaration's checks (msgspec in
`__post_init__`, pydantic in an after-validator). Nothing is asserted."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Annotated, Any
from uuid import UUID

import orjson
import pydantic

from app import validation
from app.model import NewSession

BODIES = {
    "small": {"repo": "acme/app", "target_branch": "main"},
    "typical": {
        "repo": "acme/app",
        "target_branch": "main",
        "messages": [
            {"role": "user", "content": "Fix the login redirect after the session times out"},
            {"role": "assistant", "content": "Looking at app/auth/redirect.py first."},
        ],
        "parent": "6f1c2b8e-3d4a-4e5f-8a9b-0c1d2e3f4a5b",
    },
}


Text = Annotated[str, pydantic.StringConstraints(min_length=1, max_length=validation.TEXT_MAX)]


class NewSessionPydantic(pydantic.BaseModel):
    repo: Text
    target_branch: Text
    messages: Any = None
    parent: UUID | None = None

    @pydantic.model_validator(mode="after")
    def _checks(self) -> NewSessionPydantic:
        validation.required_text("repo", self.repo)
        validation.required_text("target_branch", self.target_branch)
        validation.json_document("messages", self.messages)
        return self


def _timed(decode: Callable[[bytes], Any], body: bytes, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        decode(body)
    return (time.perf_counter() - started) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)

    decoders: dict[str, Callable[[bytes], Any]] = {
        "msgspec": NewSession.decode,
        "pydantic": NewSessionPydantic.model_validate_json,
    }
    print(f"{'body':<8} {'msgspec µs':>11} {'pydantic µs':>12} {'ratio':>6}")
    for name, body in BODIES.items():
        raw = orjson.dumps(body)
        times: dict[str, list[float]] = {kind: [] for kind in decoders}
        for round_ in range(args.rounds):
            order = list(decoders) if round_ % 2 == 0 else list(reversed(decoders))
            for kind in order:
                times[kind].append(_timed(decoders[kind], raw, args.count))
        ratio = statistics.median(
            p / m for p, m in zip(times["pydantic"], times["msgspec"], strict=True)
        )
        ours = statistics.median(times["msgspec"]) * 1e6
        theirs = statistics.median(times["pydantic"]) * 1e6
        print(f"{name:<8} {ours:>11.2f} {theirs:>12.2f} {ratio:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

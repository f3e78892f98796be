"""The tables of `bench.compare`: medians of the rounds, each server's rate as a share of the raw
baseline's, the ratios the issue's targets name, and every run; as text or Markdown."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.load import Run
from bench.scenarios import (
    GRAPHQL,
    POSTGRAPHILE,
    RAW,
    REST,
    SCENARIO_TITLES,
    SERVER_TITLES,
)


@dataclass(frozen=True, slots=True)
class Measured:
    scenario: str
    server: str
    round: int
    run: Run
    # Answers refused in the warm-up before the timed run.
    warm_up_failures: int = 0

    @property
    def failures(self) -> int:
        return self.run.failures + self.warm_up_failures


def _median_ratio(
    results: Sequence[Measured], scenario: str, top: str, bottom: str
) -> float | None:
    """Median over rounds of (rate of `top`) / (rate of `bottom`) in the same round."""
    ratios = []
    for round_ in sorted({r.round for r in results}):
        rates = {
            r.server: r.run.per_s for r in results if (r.scenario, r.round) == (scenario, round_)
        }
        if rates.get(top) and rates.get(bottom):
            ratios.append(rates[top] / rates[bottom])
    return statistics.median(ratios) if ratios else None


def _median_rate(results: Sequence[Measured], scenario: str, server: str) -> float | None:
    rates = [r.run.per_s for r in results if (r.scenario, r.server) == (scenario, server)]
    return statistics.median(rates) if rates else None


def table(cells: list[list[str]], markdown: bool, right: int = 1) -> list[str]:
    if markdown:
        rule = ["---"] + ["---:"] * (len(cells[0]) - 1)
        return [f"| {' | '.join(line)} |" for line in [cells[0], rule, *cells[1:]]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return [
        "  ".join(
            cell.ljust(width) if i < right else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in cells
    ]


def summary(
    results: Sequence[Measured], servers: Sequence[str], scenarios: Sequence[str], markdown: bool
) -> list[str]:
    """The main table: per scenario, each server's rate / the raw baseline's (median of the
    rounds), its median requests/s, and the failures."""
    cells = [["scenario", *(SERVER_TITLES[s] for s in servers), "failures"]]
    for scenario in scenarios:
        line = [SCENARIO_TITLES[scenario]]
        for server in servers:
            rate = _median_rate(results, scenario, server)
            ratio = _median_ratio(results, scenario, server, RAW)
            if rate is None:
                line.append("n/a")
                continue
            share = f"{ratio:.2f}" if ratio is not None else "n/a"
            note = " (no parent title)" if server == REST and scenario == "list" else ""
            line.append(f"{share} ({rate:,.0f}/s){note}")
        failed = [
            f"{SERVER_TITLES[r.server]} round {r.round}: {r.failures:,}"
            for r in results
            if r.scenario == scenario and r.failures
        ]
        line.append("; ".join(failed) or "0")
        cells.append(line)
    return table(cells, markdown)


def targets(
    results: Sequence[Measured], servers: Sequence[str], scenarios: Sequence[str], markdown: bool
) -> list[str]:
    """The ratios the issue's targets name: GraphQL / PostGraphile and REST / raw."""
    pairs = [(REST, RAW, "REST / raw")]
    if POSTGRAPHILE in servers:
        pairs.insert(0, (GRAPHQL, POSTGRAPHILE, "GraphQL / PostGraphile"))
    pairs.append((GRAPHQL, RAW, "GraphQL / raw"))
    cells = [["ratio (median of rounds)", *scenarios]]
    for top, bottom, name in pairs:
        line = [name]
        for scenario in scenarios:
            ratio = _median_ratio(results, scenario, top, bottom)
            line.append("n/a" if ratio is None else f"{ratio:.2f}")
        cells.append(line)
    return table(cells, markdown)


def runs(results: Sequence[Measured], markdown: bool) -> list[str]:
    """Every timed run."""
    cells = [["scenario", "server", "round", "requests", "req/s", "p50 ms", "p99 ms", "failures"]]
    for r in sorted(results, key=lambda r: (r.scenario, r.server, r.round)):
        failures = f"{r.failures:,}" + (f" ({r.run.sample[:80]})" if r.run.sample else "")
        cells.append(
            [
                r.scenario,
                r.server,
                str(r.round),
                f"{r.run.requests:,}",
                f"{r.run.per_s:,.0f}",
                f"{r.run.p50_ms:.2f}",
                f"{r.run.p99_ms:.2f}",
                failures,
            ]
        )
    return table(cells, markdown, right=3)

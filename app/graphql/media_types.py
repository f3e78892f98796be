"""Which of the two media types of the GraphQL-over-HTTP specification a response is sent as,
read from the request's `Accept` header (RFC 9110 §12.5.1: media ranges with q-values, the most
specific range that matches a type giving its quality).

`application/graphql-response+json` goes to a client that prefers it; `application/json` to every
other one: a client that sends no `Accept`, `*/*`, or only types we cannot send (the specification
lets a server disregard such a header rather than answer 406)."""

from __future__ import annotations

from collections.abc import Iterator

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
JSON = "application/json"

# A media range: (type, subtype, q).
_Range = tuple[str, str, float]


def _media_ranges(accept: str) -> Iterator[_Range]:
    for part in accept.split(","):
        media_range, *params = (piece.strip() for piece in part.split(";"))
        kind, slash, subtype = media_range.lower().partition("/")
        if not slash or not kind or not subtype:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = min(max(float(value), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        yield kind, subtype, q


def _quality(ranges: list[_Range], media_type: str) -> tuple[float, bool]:
    """`media_type`'s q-value, and whether a range names it exactly (not with a wildcard)."""
    kind, _, subtype = media_type.partition("/")
    best: tuple[int, float] = (-1, 0.0)
    for range_kind, range_subtype, q in ranges:
        if (range_kind, range_subtype) == (kind, subtype):
            specificity = 2
        elif (range_kind, range_subtype) == (kind, "*"):
            specificity = 1
        elif (range_kind, range_subtype) == ("*", "*"):
            specificity = 0
        else:
            continue
        if specificity > best[0]:
            best = (specificity, q)
    return best[1], best[0] == 2


def response_media_type(accept: str | None) -> str:
    """The media type to answer a request whose `Accept` header is `accept` with. On a tie,
    `application/graphql-response+json` only when the client named it: a wildcard keeps to the
    legacy `application/json`."""
    if not accept:
        return JSON
    ranges = list(_media_ranges(accept))
    graphql_q, named = _quality(ranges, GRAPHQL_RESPONSE_JSON)
    json_q, _ = _quality(ranges, JSON)
    if graphql_q > json_q or (graphql_q == json_q > 0 and named):
        return GRAPHQL_RESPONSE_JSON
    return JSON

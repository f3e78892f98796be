"""The compiled read path: a query that frontends send again and again is answered by one SQL
statement that builds the whole `data` as JSON text in PostgreSQL (`app.store.json_reads`),
spliced into the response without being decoded here, as PostGraphile, Hasura and pg_graphql do.
graphql-core's field-by-field execution costs about 100 µs for one session and milliseconds for a
page of 50 with their parents; building the same answer in the statement costs PostgreSQL tens
of microseconds.

A document is answered by Strawberry the first time it is seen. Once Strawberry has parsed and
validated it (through the schema's document cache, with every limit), it is planned; the next
time, its plan runs. The plan's answers are Strawberry's, byte for byte once parsed (the suite
checks each query it runs both ways). Whatever the plan cannot answer as Strawberry would goes
to Strawberry: documents it cannot plan (see `plan`), variables or arguments that Strawberry
would refuse (its errors are the answer), and SQLite. A database that cannot answer now is
told at once as SERVICE_UNAVAILABLE for the whole operation, not waited for a second time.

The documents of `createSession` and `updateSession` are planned too, as validated: the next
time, their resolver runs without graphql-core's execution (`app.graphql.compiled.mutations`).
Only a POST runs them."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from graphql import GraphQLError, GraphQLSchema
from graphql.execution.values import get_argument_values
from starlette.requests import HTTPConnection
from strawberry.utils.str_converters import to_snake_case

from app import listing
from app.db import Database, DatabaseBusy
from app.errors import InvalidInput
from app.graphql.caches import DocumentCache
from app.graphql.compiled.mutations import CompiledMutations, MutationPlan
from app.graphql.compiled.plan import Plan, plan
from app.graphql.compiled.variables import Coercer, coercer
from app.graphql.inputs import SessionFilter, SessionOrder
from app.service import SessionService
from app.store import json_reads as reads

log = logging.getLogger(__name__)

# Plans kept, least recently used first out: a plan is a few kilobytes, and a frontend sends
# some tens of distinct queries.
MAX_PLANS = 1024
# Statements kept per plan, one per shape of its pages' arguments (which filters, bounds and
# directions); past it, a shape's statement is made anew for each request.
MAX_STATEMENTS = 64
# The plan of a document that has none: it goes to Strawberry.
_NONE = object()

_Key = tuple[bytes, str | None]


class _Planned:
    __slots__ = ("coerce", "plan", "statements")

    def __init__(self, schema: GraphQLSchema, planned: Plan) -> None:
        self.plan = planned
        self.coerce: Coercer = coercer(schema, planned.variables)
        self.statements: dict[tuple[Any, ...], reads.Statement] = {}


class CompiledReads:
    """The plans of the documents of one schema, made as its document cache validates them:
    queries', and those of the mutations `app.graphql.compiled.mutations` runs."""

    def __init__(self, schema: GraphQLSchema, documents: DocumentCache) -> None:
        self.schema = schema
        self.documents = documents
        self.mutations = CompiledMutations(schema)
        self._plans: OrderedDict[_Key, _Planned | MutationPlan | object] = OrderedDict()

    def learn(self, query: str, operation_name: str | None) -> None:
        """Plan `query`, if the document cache holds it validated without error, so the next
        request with it runs compiled. Called once Strawberry has answered it."""
        digest = self.documents.key(query)
        if digest is None:
            return
        key = (digest, operation_name)
        if key in self._plans:
            return
        document = self.documents.validated(digest)
        if document is None:
            return  # refused, or not kept: Strawberry answers it each time
        planned = plan(self.schema, document, operation_name)
        if planned is not None:
            self._plans[key] = _Planned(self.schema, planned)
        else:
            self._plans[key] = self.mutations.plan(document, operation_name) or _NONE
        if len(self._plans) > MAX_PLANS:
            self._plans.popitem(last=False)

    async def answer(
        self,
        db: Database,
        query: str,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> str | None:
        """The JSON text of the `data` of `query`, or None when Strawberry must answer it;
        `DatabaseBusy` when the database cannot answer now."""
        if not db.is_postgres:
            return None
        key, planned = self._lookup(query, operation_name)
        if key is None or not isinstance(planned, _Planned):
            return None
        values = _values(planned, variables)
        if values is None:
            return None
        shape = tuple(
            value.key() if isinstance(value, reads.Listing) else None for value in values.values()
        )
        statement = planned.statements.get(shape)
        if statement is None:
            statement = reads.statement(planned.plan.shape, values)
            if len(planned.statements) < MAX_STATEMENTS:
                planned.statements[shape] = statement
        try:
            text: str = await db.fetch_value(statement.sql, *statement.arguments(values))
        except DatabaseBusy:
            # Told at once (the view answers SERVICE_UNAVAILABLE): Strawberry would wait for
            # the database a second time, doubling the bound of the answer.
            raise
        except Exception:
            # A statement this module made wrong: logged once, and the document goes to
            # Strawberry from now on.
            log.exception("the compiled statement of a query failed; Strawberry answers it")
            self._plans[key] = _NONE
            return None
        return text

    async def mutate(
        self,
        service: SessionService,
        request: HTTPConnection | None,
        query: str,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> bytes | None:
        """The JSON body of the answer to the mutation `query`, run with the context a request
        has, or None when Strawberry must answer it (nothing ran then). Never for a request
        that may not run mutations (a GET)."""
        _key, planned = self._lookup(query, operation_name)
        if not isinstance(planned, MutationPlan):
            return None
        return await self.mutations.run(planned, service, request, variables)

    def _lookup(self, query: str, operation_name: str | None) -> tuple[_Key | None, object]:
        """The key of `query` and its plan (None when it has none), marked recently used."""
        digest = self.documents.key(query)
        if digest is None:
            return None, None
        key = (digest, operation_name)
        planned = self._plans.get(key)
        if planned is not None:
            self._plans.move_to_end(key)
        return key, planned


def _values(planned: _Planned, variables: Mapping[str, Any] | None) -> reads.Values | None:
    """The values of the plan's nodes for a run: an id, or how a page is read. None when
    Strawberry would refuse them (it answers with its errors)."""
    coerced = planned.coerce(variables)
    if coerced is None:
        return None
    values: reads.Values = {}
    try:
        for number, arguments in planned.plan.arguments.items():
            given = get_argument_values(arguments.definition, arguments.node, coerced)
            if arguments.kind == "session":
                values[number] = given["id"]
            elif arguments.kind == "sessions":
                values[number] = _sessions(given)
            else:
                values[number] = _children(given)
    except (GraphQLError, InvalidInput):
        return None
    return values


def _input(cls: type[Any], given: Mapping[str, Any] | None) -> Any:
    """The Strawberry input `cls` that `given` (coerced, by GraphQL names) holds."""
    return cls(**{to_snake_case(name): value for name, value in (given or {}).items()})


def _sessions(given: Mapping[str, Any]) -> reads.Listing:
    """How `Query.sessions` reads, as its resolver and the service decide it."""
    filter_, order_by = given.get("filter"), given.get("orderBy")
    order = _input(SessionOrder, order_by).to_domain() if order_by else listing.NEWEST_FIRST
    criteria = _input(SessionFilter, filter_).to_domain() if filter_ else listing.SessionFilter()
    paging = listing.paging(
        order,
        first=given.get("first"),
        after=given.get("after"),
        last=given.get("last"),
        before=given.get("before"),
    )
    return reads.Listing(
        criteria, order, paging.limit, paging.after, paging.before, backward=paging.backward
    )


def _children(given: Mapping[str, Any]) -> reads.Listing:
    """How `Session.children` reads: newest first, forward."""
    after = given.get("after")
    paging = listing.paging(listing.NEWEST_FIRST, first=given.get("first"), after=after)
    return reads.Listing(listing.SessionFilter(), listing.NEWEST_FIRST, paging.limit, paging.after)

"""The schema, built once per app because its limits come from the settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from app.config import Settings
from app.graphql.context import FreshLoaders
from app.graphql.cost import QueryCostRule
from app.graphql.errors import MaskUnexpectedErrors, is_unexpected
from app.graphql.execution import InboxExecutionContext
from app.graphql.limits import alias_rule, depth_rule
from app.graphql.mutations import Mutation
from app.graphql.queries import Query
from app.graphql.scalars import SCALARS
from app.graphql.subscriptions import Subscription

# Distinct documents whose parse and validation are kept; clients send few distinct queries.
DOCUMENT_CACHE_SIZE = 512


class InboxSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Log what was masked; what the client sent wrong is its business, not an alert.
        super().process_errors([e for e in errors if is_unexpected(e)], execution_context)


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The contract's schema with the limits of `settings` (default: the defaults)."""
    settings = settings or Settings()
    # Made once per app: ValidationCache's key includes the rules, so rules made per request
    # would defeat it.
    limits = [depth_rule(settings.max_query_depth), alias_rule(settings.max_aliases), QueryCostRule]
    # Factories, not instances: Strawberry makes the extensions anew for every operation.
    extensions: list[Callable[[], SchemaExtension]] = [
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
        partial(ParserCache, maxsize=DOCUMENT_CACHE_SIZE),
        partial(AddValidationRules, limits),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    extensions += [
        partial(ValidationCache, maxsize=DOCUMENT_CACHE_SIZE),
        FreshLoaders,
        MaskUnexpectedErrors,
    ]
    return InboxSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS),
        execution_context_class=InboxExecutionContext,
    )

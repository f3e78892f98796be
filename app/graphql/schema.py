"""The schema, built once per app because its limits come from the settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLError, GraphQLSchema
from strawberry.extensions import DisableIntrospection, MaxTokensLimiter, SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types import ExecutionContext

from app.config import Settings
from app.graphql.caches import CachedDocuments, DocumentCache, Rules, Validate
from app.graphql.compiled import CompiledReads
from app.graphql.context import FreshLoaders
from app.graphql.cost import QUERY_TOO_COMPLEX, QueryCostRule
from app.graphql.errors import MaskUnexpectedErrors, is_unexpected
from app.graphql.execution import InboxExecutionContext
from app.graphql.int_literals import IntLiteralRule
from app.graphql.limits import alias_rule, depth_rule, field_rule, validate_within_limits
from app.graphql.mutations import Mutation
from app.graphql.operation_name import RequireOperationName
from app.graphql.queries import Query
from app.graphql.scalars import SCALARS
from app.graphql.subscriptions import Subscription

# How long a document may be, per token of MAX_TOKENS: several times what real queries take
# (names, spaces and indentation: 3 to 10 characters a token), and a bound on what comments,
# which are no tokens, can add. graphql-core's lexer reads a comment a character at a time:
# a megabyte of them took 240 ms to parse, 64,000 characters (the default bound) take 15.
CHARACTERS_PER_TOKEN = 32

# The rules Strawberry adds to the specification's when it validates (its `validate_document`),
# which `validator` replaces.
STRAWBERRY_RULES: Rules = (MaybeNullValidationRule, OneOfInputValidationRule)


class InboxSchema(strawberry.Schema):
    # Whether execution's messages (a variable's value coerced) leave out "Did you mean …?"
    # suggestions, as validation's do with `validator`; set when introspection is off.
    hide_suggestions = False
    # The plans of its documents' queries, answered by one SQL statement each.
    compiled: CompiledReads

    def _get_custom_context_kwargs(
        self, operation_extensions: dict[str, Any] | None = None, *, sync: bool = False
    ) -> dict[str, Any]:
        # Strawberry passes these to graphql-core's `execute` (queries and mutations).
        kwargs = super()._get_custom_context_kwargs(operation_extensions, sync=sync)
        return kwargs | {"hide_suggestions": self.hide_suggestions}

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Log what was masked; what the client sent wrong is its business, not an alert.
        super().process_errors([e for e in errors if is_unexpected(e)], execution_context)


class MaxDocumentLength(SchemaExtension):
    """Refuses a document longer than `max_length` characters before it is parsed."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length

    def on_parse(self) -> Iterator[None]:
        length = len(self.execution_context.query or "")
        if length > self.max_length:
            # Raised before parsing, it is answered as a parse error is.
            raise GraphQLError(
                f"the document is {length} characters long. Allowed: {self.max_length}",
                extensions={"code": QUERY_TOO_COMPLEX},
            )
        yield


def validator(settings: Settings) -> Validate:
    """Validation with the limits of `settings` first, the other rules only when they hold;
    suggestions of schema names only where introspection would tell them anyway."""
    # Made once per app: the document cache keeps results per set of rules.
    limits: Rules = (
        field_rule(settings.max_selection_fields, settings.max_fields),
        depth_rule(settings.max_query_depth),
        alias_rule(settings.max_aliases),
        IntLiteralRule,
        QueryCostRule,
    )

    def validate(schema: GraphQLSchema, document: DocumentNode, rules: Rules) -> list[GraphQLError]:
        return validate_within_limits(
            schema,
            document,
            limits,
            (*rules, *STRAWBERRY_RULES),
            hide_suggestions=not settings.introspection,
        )

    return validate


def build_schema(
    settings: Settings | None = None, document_cache: DocumentCache | None = None
) -> InboxSchema:
    """The contract's schema with the limits of `settings` (default: the defaults), keeping
    documents in `document_cache` (default: one of its own)."""
    settings = settings or Settings()
    if document_cache is None:  # not `or`: an empty cache is falsy
        document_cache = DocumentCache()
    # Factories, not instances: Strawberry makes the extensions anew for every operation.
    extensions: list[Callable[[], SchemaExtension]] = [
        partial(MaxDocumentLength, settings.max_tokens * CHARACTERS_PER_TOKEN),
        partial(MaxTokensLimiter, max_token_count=settings.max_tokens),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    extensions += [
        partial(CachedDocuments, document_cache, validator(settings)),
        # After the extensions that validate: its error replaces theirs.
        RequireOperationName,
        FreshLoaders,
        MaskUnexpectedErrors,
    ]
    schema = InboxSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS),
        execution_context_class=InboxExecutionContext,
    )
    schema.hide_suggestions = not settings.introspection
    schema.compiled = CompiledReads(schema._schema, document_cache)
    return schema

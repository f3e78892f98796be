"""A document of several operations runs only the one its `operationName` names.

The GraphQL specification (GetOperation) makes a missing name a request error when a document
holds more than one operation; Strawberry instead runs the first, even a mutation the client
never meant to send. This extension refuses such a request before anything executes."""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

OPERATION_NAME_REQUIRED = "OPERATION_NAME_REQUIRED"


class RequireOperationName(SchemaExtension):
    """Refuses, coded OPERATION_NAME_REQUIRED, a document of several operations sent without
    an `operationName`. It must come after the extensions that validate (its error replaces
    theirs, and no validation runs then)."""

    def on_operation(self) -> Iterator[None]:
        # Before parsing, the context's operation name is the one the request gave; after, it
        # falls back to the document's first operation.
        self.requested_name = self.execution_context.operation_name
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if self.requested_name is None and document is not None:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1:
                message = (
                    f"the document holds {len(operations)} operations: "
                    "name the one to run in operationName"
                )
                context.pre_execution_errors = [
                    GraphQLError(message, extensions={"code": OPERATION_NAME_REQUIRED})
                ]
        yield

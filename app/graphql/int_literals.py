"""Int literals longer than any Int, refused before the specification's rules see them."""

from __future__ import annotations

from graphql import GraphQLError, GraphQLInt, IntValueNode, ValidationRule, get_named_type

from app.graphql.cost import MAX_INT_LITERAL_LENGTH


class IntLiteralRule(ValidationRule):
    """Refuses an Int literal longer than any 32-bit integer, as the specification's rule
    would, before that rule converts its text: Python refuses to make an int of more than 4,300
    digits, and graphql-core's Int scalar would fail with a ValueError (a server error)."""

    def enter_int_value(self, node: IntValueNode, *_args: object) -> None:
        if len(node.value) <= MAX_INT_LITERAL_LENGTH:
            return
        expected = self.context.get_input_type()
        if expected is not None and get_named_type(expected) is GraphQLInt:
            self.report_error(
                GraphQLError(
                    f"Int cannot represent non 32-bit signed integer value: "
                    f"{node.value[:MAX_INT_LITERAL_LENGTH]}… ({len(node.value)} digits)",
                    node,
                )
            )

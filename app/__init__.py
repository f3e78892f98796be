"""session-inbox: stores and serves coding-agent sessions over GraphQL and REST."""

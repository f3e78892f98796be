"""The GraphQL face of the service: the contract's schema, served at `/graphql` by Strawberry.

Resolvers parse arguments, call `app.service` (directly or through this request's DataLoaders)
and wrap the rows they get back; no SQL and no rules live here."""

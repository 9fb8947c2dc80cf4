"""The handler and its pipeline without a server: batching, policies, capture, the ledger."""

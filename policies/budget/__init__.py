"""Monthly budget caps and the cost ledger."""

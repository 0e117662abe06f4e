"""The agent data plane (async)."""

"""Fixtures for the mcp peers (see tests/peers/__init__.py)."""

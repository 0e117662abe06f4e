"""Fixtures for the oauth peers (see tests/peers/__init__.py)."""

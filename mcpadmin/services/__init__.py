"""Orchestration callable from views, the CLI and tests alike: no request context here."""

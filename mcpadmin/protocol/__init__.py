"""Wire-level code: no Flask, no database. Pure functions where possible."""

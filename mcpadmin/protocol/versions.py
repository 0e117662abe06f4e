"""MCP protocol versions mcpadmin speaks, newest first."""

MODERN_VERSIONS = ("2026-07-28",)  # stateless: server/discover, per-request _meta
LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")  # initialize and sessions
MODERN_VERSION = MODERN_VERSIONS[0]
# [25J/chg]: the MCP-Protocol-Version header exists from 2025-06-18 on; this one has none.
WITHOUT_VERSION_HEADER = "2025-03-26"

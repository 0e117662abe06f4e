"""Configuration: defaults here, then ``instance/config.py``, then ``MCPADMIN_*`` environment.

Secrets the operator did not provide (``SECRET_KEY``, ``ENCRYPTION_KEYS``) are generated on first
start and kept under the instance folder with mode 0600, so a restart keeps sessions and, above
all, keeps every stored credential readable.
"""

import contextlib
import os
import secrets
import stat
import tempfile
from datetime import timedelta
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

from .protocol.urls import host_and_port

# Fewer characters than this in SECRET_KEY and a session cookie's signature can be guessed.
MIN_SECRET_KEY_LENGTH = 32
# A metrics token shorter than this could be guessed by a scraper-shaped brute force.
MIN_METRICS_TOKEN_LENGTH = 16
# The values of LOG_FORMAT.
LOG_FORMATS = ("text", "json")
# Key files: anything more open than owner read/write (0600) is refused at start.
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO


# Settings that must be 1 or more (the days the logs are kept: 0 would delete them all).
POSITIVE = ("CALL_LOG_DAYS", "AUDIT_LOG_DAYS", "GATEWAY_MAX_STREAMS_PER_KEY",
            "GATEWAY_MAX_STREAMS", "GATEWAY_THREADS", "ADMIN_THREADS",
            "MAX_PENDING_REQUESTS_PER_ADDRESS")  # fmt: skip
# The exit status of a process whose app cannot load: gunicorn's "App failed to load", so its
# master stops instead of restarting workers that would fail the same way forever.
APP_LOAD_ERROR = 4


class ConfigError(ValueError):
    """The app cannot start with this configuration; the message names the setting or file and
    how to fix it, and never contains a secret."""


class Defaults:
    # The public URL the app is reached at; OAuth redirect URIs are built from it, never from
    # the request's Host header.
    PUBLIC_BASE_URL = "http://127.0.0.1:5000"
    # Seconds allowed for one outbound HTTP call (connect + read).
    HTTP_TIMEOUT = 10.0
    # Largest response body accepted from a remote server, in bytes.
    HTTP_MAX_BYTES = 5 * 1024 * 1024
    # Seconds one tool call may take upstream, handshake and streamed progress included; also
    # the longest wait for the next byte of its answer (connects keep HTTP_TIMEOUT).
    CALL_TIMEOUT = 300.0
    # Outbound calls to loopback/private/link-local addresses: off unless the operator allows it.
    ALLOW_PRIVATE_NETWORKS = False
    # Development mode: accept http:// OAuth endpoints on loopback hosts (never other hosts).
    ALLOW_HTTP_LOOPBACK = False
    # Seconds one worker may hold the right to refresh a token; the refresh request's timeout
    # is kept well below it, so the right never lapses while a request is in flight.
    REFRESH_LOCK_SECONDS = 30
    # Run Alembic migrations when the app starts, so an upgrade needs no extra step.
    AUTO_MIGRATE = True

    # Sign-in attempts allowed per address and username, and per username from all addresses
    # together, within LOGIN_LOCKOUT_SECONDS.
    LOGIN_MAX_FAILURES = 5
    LOGIN_USERNAME_MAX_FAILURES = 50
    LOGIN_LOCKOUT_SECONDS = 15 * 60
    # Failed agent keys (missing, wrong, expired, revoked) allowed per address within
    # AGENT_KEY_LOCKOUT_SECONDS at the agent endpoints; then the address waits out the window.
    AGENT_KEY_MAX_FAILURES = 20
    AGENT_KEY_LOCKOUT_SECONDS = 5 * 60
    # Reverse proxies in front of the app whose X-Forwarded-For / -Proto are believed; 0 = none.
    TRUSTED_PROXY_HOPS = 0
    # Largest JSON-RPC message an agent may POST to its endpoint, in bytes.
    GATEWAY_MAX_REQUEST_BYTES = 4 * 1024 * 1024
    # Streams that tell agents their tools changed (legacy GET, modern subscriptions/listen):
    # how often they look (seconds), and how long one lasts before the client opens another.
    GATEWAY_WATCH_SECONDS = 2.0
    GATEWAY_STREAM_SECONDS = 300
    # Open streams one agent key may hold, and one process: beyond either, 429 / 503 with
    # Retry-After (a stream costs a coroutine and a few kilobytes, never a thread).
    GATEWAY_MAX_STREAMS_PER_KEY = 32
    GATEWAY_MAX_STREAMS = 4000
    # Threads per process for the data plane's blocking work (database statements, token
    # refreshes), and for the admin app's requests (Flask behind the WSGI adapter).
    GATEWAY_THREADS = 16
    ADMIN_THREADS = 8
    # A request body must arrive whole within this many seconds (a client dripping it is cut
    # off); at most this many requests from one address may be sending their bodies at once.
    REQUEST_READ_SECONDS = 10.0
    MAX_PENDING_REQUESTS_PER_ADDRESS = 16
    # Largest request body to an admin page, in bytes (forms are small).
    ADMIN_MAX_REQUEST_BYTES = 2 * 1024 * 1024
    # Days kept: the call log (one row per agent tool call) and the admin audit trail;
    # ``flask prune-logs`` (also run by ``flask sync-tools``) deletes older rows.
    CALL_LOG_DAYS = 30
    AUDIT_LOG_DAYS = 365
    # Write the call log at all (on by default; off only to measure what it costs).
    CALL_LOG = True
    # ``/metrics`` (Prometheus): off until a token is set; scrapers send it as a bearer token.
    METRICS_TOKEN: str | None = None
    # Log lines: "text" (default) or "json" (one object per line, with the request id).
    LOG_FORMAT = "text"
    # Hosts served besides PUBLIC_BASE_URL's: ``host:port``, or ``host`` for the default port of
    # PUBLIC_BASE_URL's scheme (80 for http, 443 for https); ``security.allowed_host``.
    EXTRA_HOSTS: list[str] = []

    # Needs attention: a connector is flagged when more than this share of its calls in the
    # last hour failed (``services.attention``), counted only from this many calls on.
    ATTENTION_ERROR_RATE = 0.2
    ATTENTION_MIN_CALLS = 10
    # Agent keys expiring within this many days are flagged.
    ATTENTION_KEY_DAYS = 7
    # Webhooks (``services.webhooks``): each process looks for new attention items and due
    # deliveries every NOTIFY_INTERVAL seconds (0: never; ``flask notify`` from cron instead).
    # A failed delivery is tried again after each of WEBHOOK_RETRY_SECONDS in turn (the last
    # repeating), WEBHOOK_MAX_ATTEMPTS times in all; one attempt may take WEBHOOK_TIMEOUT.
    NOTIFY_INTERVAL = 30
    WEBHOOK_RETRY_SECONDS = [30, 120, 600, 3600]
    WEBHOOK_MAX_ATTEMPTS = 6
    WEBHOOK_TIMEOUT = 10.0

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_NAME = "mcpadmin_session"
    PERMANENT_SESSION_LIFETIME = timedelta(hours=12)
    # The CSRF token lives as long as the login session instead of one hour, so a page left
    # open over lunch still saves.
    WTF_CSRF_TIME_LIMIT = None
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}


def load(app, test_config=None):
    """Fill ``app.config``: defaults, instance file, environment, then ``test_config``.

    :raise ConfigError: a key file is open to other users, SECRET_KEY or METRICS_TOKEN is too
        short, ``PUBLIC_BASE_URL`` names no host, or an ``EXTRA_HOSTS`` entry is no host.
    """
    app.config.from_object(Defaults)
    app.config.from_pyfile("config.py", silent=True)
    app.config.from_prefixed_env("MCPADMIN")
    if os.environ.get("DATABASE_URL") and "SQLALCHEMY_DATABASE_URI" not in app.config:
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if "DATABASE_URL" in app.config:
        app.config["SQLALCHEMY_DATABASE_URI"] = app.config["DATABASE_URL"]
    if test_config:
        app.config.update(test_config)

    os.makedirs(app.instance_path, exist_ok=True)
    if "SQLALCHEMY_DATABASE_URI" not in app.config:
        path = os.path.join(app.instance_path, "mcpadmin.sqlite3")
        # Created by us, owner-only, before SQLite creates it with the default umask.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///" + path
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(app, "secret_key", secrets.token_urlsafe(48))
    secret_key = app.config["SECRET_KEY"]
    if not isinstance(secret_key, str | bytes) or len(secret_key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(
            f"SECRET_KEY is too short: it needs at least {MIN_SECRET_KEY_LENGTH} characters. "
            "Generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    app.config["METRICS_TOKEN"] = metrics_token(app.config.get("METRICS_TOKEN"))
    keys = app.config.get("ENCRYPTION_KEYS")
    if not keys:
        keys = instance_secret(app, "encryption_keys", Fernet.generate_key().decode())
    app.config["ENCRYPTION_KEYS"] = key_list(keys)
    app.config["PUBLIC_BASE_URL"] = app.config["PUBLIC_BASE_URL"].rstrip("/")
    app.config["HTTP_TIMEOUT"] = float(app.config["HTTP_TIMEOUT"])
    for name in ("CALL_TIMEOUT", "GATEWAY_WATCH_SECONDS", "REQUEST_READ_SECONDS"):
        app.config[name] = float(app.config[name])
    integers = ("TRUSTED_PROXY_HOPS", "LOGIN_MAX_FAILURES", "LOGIN_USERNAME_MAX_FAILURES",
                "AGENT_KEY_MAX_FAILURES", "AGENT_KEY_LOCKOUT_SECONDS", "GATEWAY_STREAM_SECONDS",
                "GATEWAY_MAX_REQUEST_BYTES", "CALL_LOG_DAYS", "AUDIT_LOG_DAYS",
                "GATEWAY_MAX_STREAMS_PER_KEY", "GATEWAY_MAX_STREAMS", "GATEWAY_THREADS",
                "ADMIN_THREADS", "MAX_PENDING_REQUESTS_PER_ADDRESS",
                "ADMIN_MAX_REQUEST_BYTES")  # fmt: skip
    for name in integers:
        app.config[name] = integer_setting(name, app.config[name])
    for name in POSITIVE:
        if app.config[name] < 1:
            unit = " of days" if name.endswith("_DAYS") else ""
            raise ConfigError(f"{name} must be a whole number{unit}, 1 or more; "
                              f"it is {app.config[name]}.")  # fmt: skip
    attention(app.config)
    app.config["EXTRA_HOSTS"] = key_list(app.config["EXTRA_HOSTS"])
    for host in app.config["EXTRA_HOSTS"]:
        if host_and_port(host, None) is None:
            raise ConfigError(f"EXTRA_HOSTS entry {host[:100]!r} is not a host or host:port "
                              "(an IPv6 address goes in brackets: [::1]:8000).")  # fmt: skip
    if app.config["LOG_FORMAT"] not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not "
                          f"{str(app.config['LOG_FORMAT'])[:40]!r}.")  # fmt: skip
    # Any other Host (or port) is answered 400 (security.allowed_host): a DNS-rebinding page
    # cannot reach the app.
    public = urlsplit(app.config["PUBLIC_BASE_URL"])
    if not public.hostname or host_and_port(public.netloc.rpartition("@")[2], None) is None:
        raise ConfigError(f"PUBLIC_BASE_URL {app.config['PUBLIC_BASE_URL']!r} names no host.")
    if app.config["PUBLIC_BASE_URL"].startswith("https://"):
        app.config["SESSION_COOKIE_SECURE"] = True


def integer_setting(name: str, value) -> int:
    """``value`` (an int, or the text of one from the environment) as an int.

    :raise ConfigError: it is not a whole number (the message names the setting).
    """
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a whole number, not {value!r}.")
    try:
        return int(str(value).strip()) if not isinstance(value, int) else value
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}.") from None


def metrics_token(token):
    """The ``/metrics`` bearer token, or None (metrics off) when unset or empty.

    :raise ConfigError: the token is shorter than ``MIN_METRICS_TOKEN_LENGTH`` (or not text).
    """
    if token is None or token == "":
        return None
    if not isinstance(token, str) or len(token.strip()) < MIN_METRICS_TOKEN_LENGTH:
        raise ConfigError(
            f"METRICS_TOKEN is too short: it needs at least {MIN_METRICS_TOKEN_LENGTH} "
            "characters. Generate one with: python3 -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'"
        )
    return token.strip()


def key_list(keys):
    """Normalise keys (or hosts) given as a list, or as one string separated by commas or
    newlines."""
    if isinstance(keys, str):
        keys = keys.replace(",", "\n").splitlines()
    return [k.strip() for k in keys if k and k.strip()]


def database_url(url):
    """Point plain ``postgresql://`` URLs at the psycopg 3 driver the project installs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def instance_secret(app, filename, fresh_value):
    """Read ``instance/<filename>``, creating it (mode 0600) with ``fresh_value`` if absent.

    The value is written to a temporary file and linked into place, so a process starting at
    the same moment finds either no file or a whole one, and every process ends up with the
    value of whichever linked first.

    :raise ConfigError: the file can be read or written by group or others.
    """
    path = os.path.join(app.instance_path, filename)
    if not os.path.exists(path):
        _create_once(path, fresh_value)
    with open(path, encoding="utf-8") as f:
        mode = os.fstat(f.fileno()).st_mode
        if mode & OPEN_TO_OTHERS:
            raise ConfigError(
                f"{path} is open to other users (mode {stat.S_IMODE(mode):o}); it holds a "
                f"secret. Make it private with: chmod 600 {path}"
            )
        return f.read().strip()


def _create_once(path, value):
    """Write ``value`` to ``path`` unless another process got there first (then keep theirs)."""
    fd, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".new-")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value + "\n")
            f.flush()
            os.fsync(f.fileno())
        # Atomic, and refuses to replace a file another process linked first.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        os.unlink(temporary)


def attention(config):
    """Check and convert the Needs attention and webhook settings in place.

    :raise ConfigError: a rate outside 0–1, a negative interval, or a retry delay or count
        that is not a whole number of 1 or more (the message names the setting).
    """
    for name in ("ATTENTION_ERROR_RATE", "WEBHOOK_TIMEOUT"):
        try:
            config[name] = float(config[name])
        except (TypeError, ValueError):
            raise ConfigError(f"MCPADMIN_{name} must be a number, not {config[name]!r}.") from None
    if not 0 < config["ATTENTION_ERROR_RATE"] <= 1:
        raise ConfigError("MCPADMIN_ATTENTION_ERROR_RATE must be a share above 0 and at most 1 "
                          f"(0.2 is 20 %); it is {config['ATTENTION_ERROR_RATE']}.")  # fmt: skip
    for name in ("ATTENTION_MIN_CALLS", "ATTENTION_KEY_DAYS", "NOTIFY_INTERVAL",
                 "WEBHOOK_MAX_ATTEMPTS"):  # fmt: skip
        config[name] = integer_setting(f"MCPADMIN_{name}", config[name])
    delays = config["WEBHOOK_RETRY_SECONDS"]
    delays = key_list(delays) if isinstance(delays, str) else list(delays)
    config["WEBHOOK_RETRY_SECONDS"] = [
        integer_setting("MCPADMIN_WEBHOOK_RETRY_SECONDS", delay) for delay in delays
    ]
    if config["NOTIFY_INTERVAL"] < 0:
        raise ConfigError("MCPADMIN_NOTIFY_INTERVAL must be 0 (off) or a number of seconds.")
    if min(config["WEBHOOK_RETRY_SECONDS"], default=0) < 1 or config["WEBHOOK_MAX_ATTEMPTS"] < 1:
        raise ConfigError(
            "MCPADMIN_WEBHOOK_RETRY_SECONDS needs at least one delay of 1 second or more, "
            "and MCPADMIN_WEBHOOK_MAX_ATTEMPTS must be 1 or more."
        )

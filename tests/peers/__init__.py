"""Real peers for the integration tests: MCP servers and an OAuth authorization server built
from the official ``mcp`` SDK, each started as a subprocess on 127.0.0.1."""

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(__file__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Peer:
    process: subprocess.Popen
    port: int
    log_path: str

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self):
        terminate(self.process)
        os.unlink(self.log_path)


def terminate(process: subprocess.Popen):
    """Stop ``process``: politely, then after 10 s by force."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def start(script: str, *args: str, python: str = sys.executable, timeout: float = 30,
          port: int | None = None) -> Peer:  # fmt: skip
    """Run ``tests/peers/<script>`` with ``--port N`` (``port``, else a free one) and ``args``;
    return once it accepts TCP.

    :raise RuntimeError: the process exited or did not listen within ``timeout`` (its log
        is in the message).
    """
    port = port or free_port()
    log = tempfile.NamedTemporaryFile("wb", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [python, os.path.join(HERE, script), "--port", str(port), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=HERE,
    )
    log.close()
    peer = Peer(process, port, log.name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return peer
        except OSError:
            time.sleep(0.05)
    output = peer.log()
    peer.stop()
    raise RuntimeError(f"peer {script} did not start:\n{output}")

"""A purpose-built resource server on 127.0.0.1 whose authorization server can be switched.

``SwitchResource(target)`` serves the RFC 9728 protected-resource metadata itself, naming
``authorization_servers=[self.issuer]`` (change ``issuer`` at any time), and forwards every
other request to ``target`` (a real peer's origin), answer relayed as is. With ``forbid_scope``
set, ``/mcp`` answers ``403 insufficient_scope`` naming that scope instead. It is what a
server whose operator moved it to another authorization server looks like to mcpadmin.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

PRM_PATH = "/.well-known/oauth-protected-resource/mcp"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class SwitchResource:
    def __init__(self, target: str, issuer: str):
        self.target = target.rstrip("/")
        self.issuer = issuer
        self.forbid_scope: str | None = None
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    @property
    def mcp_url(self) -> str:
        return self.base_url + "/mcp"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        resource = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if self.path == PRM_PATH:
                    body = json.dumps({"resource": resource.mcp_url,
                                       "authorization_servers": [resource.issuer]})  # fmt: skip
                    return self._answer(200, {"Content-Type": "application/json"}, body.encode())
                return self._forward()

            def do_POST(self):
                if self.path == "/mcp" and resource.forbid_scope:
                    challenge = (f'Bearer error="insufficient_scope", '
                                 f'scope="{resource.forbid_scope}"')  # fmt: skip
                    return self._answer(403, {"WWW-Authenticate": challenge}, b"")
                return self._forward()

            do_DELETE = do_POST

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                answer = requests.request(
                    self.command,
                    resource.target + self.path,
                    data=body,
                    headers=headers,
                    timeout=10,
                    allow_redirects=False,
                )
                relayed = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
                relayed = {k: v.replace(resource.target, resource.base_url)
                           for k, v in relayed.items()}  # fmt: skip
                self._answer(answer.status_code, relayed, answer.content)

            def _answer(self, status, headers, body):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

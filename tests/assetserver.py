"""A file server on 127.0.0.1 for the asset tests: it counts each download and records the
headers each request came with.

Paths: ``/files/NAME`` serves a file put there; ``/private/NAME`` only with
``Authorization: Bearer <token>`` (401 otherwise); ``/redirect/NAME?to=URL`` answers 307 to
``URL`` as CivitAI does to its bucket; a hub's ``/ORG/NAME/resolve/main/FILE`` and
``/api/models/ORG/NAME/revision/main`` serve the hub repositories put there.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    """What one request to the server looked like."""

    path: str
    authorization: str | None


@dataclass
class Files:
    files: dict[str, bytes] = field(default_factory=dict)
    hub: dict[str, dict[str, bytes]] = field(default_factory=dict)
    token: str = "s3cret-token-1234"
    downloads: Counter[str] = field(default_factory=Counter)
    seen: list[Seen] = field(default_factory=list)
    #: held until set: lets a test have two downloads in flight at once
    gate: threading.Event = field(default_factory=threading.Event)


class AssetServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = Files()
        self.state.gate.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: AssetServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        state.seen.append(Seen(self.path, self.headers.get("Authorization")))
        path = parts.path
        if path.startswith("/redirect/"):
            self.send_response(307)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.end_headers()
            return
        if path.startswith("/private/"):
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                self._send(401, b'{"error":"Unauthorized"}')
                return
            path = "/files/" + path.removeprefix("/private/")
        if path.startswith("/api/models/"):
            repo = path.removeprefix("/api/models/").removesuffix("/revision/main")
            if repo not in state.hub:
                self._send(404, b"{}")
                return
            listing = {"siblings": [{"rfilename": n} for n in state.hub[repo]]}
            self._send(200, json.dumps(listing).encode())
            return
        if "/resolve/main/" in path:
            repo, _, name = path.lstrip("/").partition("/resolve/main/")
            body = state.hub.get(repo, {}).get(name)
        else:
            body = state.files.get(path.removeprefix("/files/"))
        if body is None:
            self._send(404, b"not found")
            return
        state.gate.wait(60)
        state.downloads[path] += 1
        self._send(200, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


@contextlib.contextmanager
def asset_server() -> Iterator[AssetServer]:
    server = AssetServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()

"""A real HTTP server on 127.0.0.1 that answers as a test scripts it: the image hosts the collector meets."""

from __future__ import annotations

import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Route = Callable[[BaseHTTPRequestHandler], None]


def body(
    data: bytes, content_type: str = "image/jpeg", status: int = 200, headers: dict | None = None
) -> Route:
    """A route answering with fixed bytes (the Content-Type may lie, as real servers' do)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    return route


def redirect(location: str, status: int = 302) -> Route:
    return body(b"", "text/plain", status, {"Location": location})


def trickle(total: int = 100_000, every: float = 0.05) -> Route:
    """A server that sends one byte at a time: each read succeeds, the download never ends."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(total))
        handler.end_headers()
        handler.wfile.write(b"\xff\xd8\xff")
        try:
            for _ in range(total):
                handler.wfile.write(b"\x00")
                handler.wfile.flush()
                time.sleep(every)
        except OSError:
            pass

    return route


def sequence(*routes: Route) -> Route:
    """Answer the n-th request with the n-th route, then keep answering with the last one."""
    calls = iter(routes)
    last: list[Route] = []

    def route(handler: BaseHTTPRequestHandler) -> None:
        chosen = next(calls, None)
        if chosen is not None:
            last[:] = [chosen]
        last[0](handler)

    return route


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # clients that hang up early (timeouts, byte caps) are what these tests provoke


class ImageServer:
    """A ThreadingHTTPServer on 127.0.0.1 whose paths answer as the test says; counts hits and connections."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.scheme = "https" if tls else "http"
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.host_headers: list[str] = []
        self.connections: set[tuple] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real image hosts do

            def do_GET(self):
                server.hits[self.path] += 1
                server.host_headers.append(self.headers.get("Host", ""))
                server.connections.add(self.client_address)
                route = server.routes.get(self.path)
                if route is None:
                    body(b"not found", "text/plain", 404)(self)
                else:
                    route(self)

            def log_message(self, *args):
                pass

        self._httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if tls:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_port
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def add(self, path: str, route: Route) -> str:
        self.routes[path] = route
        return self.url(path)

    def start(self) -> ImageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

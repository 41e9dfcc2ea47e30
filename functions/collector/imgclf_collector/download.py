"""Fetching image bytes over HTTP(S) from untrusted servers, safely and with bounded cost.

Every request goes to the address the SSRF guard checked (the connection is pinned to that IP, while the
Host header, TLS SNI and certificate check keep the host name). Each attempt has connect and read timeouts
and a total deadline enforced by a watchdog thread, so a server that trickles bytes cannot hold a worker.
Bodies are streamed under a byte cap, redirects are followed by hand (each target checked again), and 429,
5xx and timeouts are retried with backoff that honours Retry-After. Idle connections are kept per host.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

from imgclf import backoff

from . import netguard
from .errors import DownloadError

_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
# Enough bytes to tell an image from an HTML page or an SVG document by its magic bytes.
_HEAD_BYTES = 64
USER_AGENT = "imgclf-collector/0.1 (dataset builder; honours robots-style rate limits)"


@dataclass(frozen=True)
class DownloadPolicy:
    """Limits for one download: timeouts in seconds, sizes in bytes."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    deadline: float = 30.0  # per attempt, redirects included
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 3
    retries: int = 2
    backoff_base: float = 0.5
    backoff_cap: float = 8.0
    max_retry_after: float = 30.0
    allow_private: bool = False
    user_agent: str = USER_AGENT


@dataclass(frozen=True)
class Fetched:
    """The bytes of one download; complete is False when it stopped early because the head was no image."""

    data: bytes
    url: str
    content_type: str
    complete: bool = True
    redirects: int = 0


@dataclass
class _Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes = b""
    complete: bool = True


class Downloader:
    """A thread-safe HTTP(S) client for untrusted image URLs; use one per run and close it."""

    def __init__(
        self,
        policy: DownloadPolicy | None = None,
        *,
        resolver: netguard.Resolver = socket.getaddrinfo,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_idle_per_host: int = 16,
    ):
        self.policy = policy or DownloadPolicy()
        self._resolver = resolver
        self._ssl_context = ssl_context or default_ssl_context()
        self._sleep = sleep
        self._pool = _ConnectionPool(self._connect, max_idle_per_host)
        self._watchdog = _Watchdog()
        self._headers = {
            "User-Agent": self.policy.user_agent,
            "Accept": "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8",
            "Accept-Encoding": "identity",
        }

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close every idle connection and stop the watchdog."""
        self._pool.close()
        self._watchdog.stop()

    def get(self, url: str, *, stop_if: Callable[[bytes], bool] | None = None) -> Fetched:
        """Download a URL, retrying what may pass; stop_if(head) True ends it after the first bytes."""
        policy = self.policy
        for attempt in itertools.count():
            try:
                return self._attempt(url, stop_if)
            except DownloadError as exc:
                if not exc.transient or attempt >= policy.retries:
                    raise
                wait = backoff.delay(attempt, base=policy.backoff_base, cap=policy.backoff_cap)
                if exc.retry_after is not None:
                    if exc.retry_after > policy.max_retry_after:
                        raise  # waiting that long would hold a worker for little chance of an image
                    wait = max(wait, exc.retry_after)
                self._sleep(wait)
        raise AssertionError("unreachable")

    def _attempt(self, url: str, stop_if: Callable[[bytes], bool] | None) -> Fetched:
        """One attempt: follow up to max_redirects redirects, checking each target, within one deadline."""
        deadline = time.monotonic() + self.policy.deadline
        for hop in range(self.policy.max_redirects + 1):
            target = netguard.check_url(url, allow_private=self.policy.allow_private, resolver=self._resolver)
            reply = self._exchange(target, deadline, stop_if)
            if reply.status in _REDIRECTS:
                location = reply.headers.get("Location")
                if not location:
                    raise DownloadError("http_error", f"HTTP {reply.status} without a Location header")
                url = urljoin(target.url, location.strip())
                continue
            if reply.status == 200:
                content_type = reply.headers.get("Content-Type", "")
                return Fetched(reply.body, target.url, content_type, reply.complete, hop)
            raise _status_error(reply)
        raise DownloadError("too_many_redirects", f"more than {self.policy.max_redirects} redirects")

    def _exchange(
        self, target: netguard.Target, deadline: float, stop_if: Callable[[bytes], bool] | None
    ) -> _Reply:
        """Send one GET on a kept-alive or new connection and read the reply under the deadline."""
        while True:
            conn, reused = self._pool.take(target)
            guard = self._watchdog.watch(deadline, conn)
            keep = False
            try:
                conn.request("GET", target.request_target, headers=self._headers)
                response = conn.getresponse()
                with response:  # closing the read response is what frees the connection for the next request
                    reply = self._read(response, deadline, guard, stop_if)
                    keep = reply.complete and reply.status == 200 and not response.will_close
                return reply
            except DownloadError:
                raise
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                if reused and not guard.fired:
                    continue  # the server closed an idle kept-alive connection: take another one
                raise self._failure(exc, guard, deadline) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise self._failure(exc, guard, deadline) from exc
            finally:
                fired = guard.cancel()
                if keep and not fired:
                    self._pool.give(target, conn)
                else:
                    conn.close()

    def _read(
        self,
        response: http.client.HTTPResponse,
        deadline: float,
        guard: _Guard,
        stop_if: Callable[[bytes], bool] | None,
    ) -> _Reply:
        """Stream a 200 body under the byte cap; other statuses are answered without reading their body."""
        headers = response.headers
        if response.status != 200:
            return _Reply(response.status, headers, complete=False)
        cap = self.policy.max_bytes
        length = _content_length(headers)
        if length is not None and length > cap:
            raise DownloadError("too_large", f"Content-Length {length} is over the {cap} byte limit")
        body = bytearray()
        head_checked = stop_if is None
        while chunk := response.read1(_CHUNK):
            body += chunk
            if len(body) > cap:
                raise DownloadError("too_large", f"the body is over the {cap} byte limit")
            if not head_checked and len(body) >= _HEAD_BYTES:
                head_checked = True
                if stop_if(bytes(body)):
                    return _Reply(200, headers, bytes(body), complete=False)
            if time.monotonic() > deadline:
                raise _timeout(self.policy.deadline)
        if guard.fired:  # the watchdog shut the socket, which reads as the end of the body
            raise _timeout(self.policy.deadline)
        if length is not None and len(body) < length:
            raise DownloadError(
                "connection_error", f"the server sent {len(body)} of {length} bytes", transient=True
            )
        return _Reply(200, headers, bytes(body))

    def _failure(self, exc: BaseException, guard: _Guard, deadline: float) -> DownloadError:
        """Translate a socket, TLS or HTTP protocol error into a rejection reason."""
        if guard.fired or time.monotonic() >= deadline:
            return _timeout(self.policy.deadline)
        if isinstance(exc, TimeoutError):
            return DownloadError(
                "timeout", f"no answer within {self.policy.read_timeout:g} s", transient=True
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return DownloadError("tls_error", f"certificate refused: {exc.verify_message or exc}")
        return DownloadError("connection_error", f"{type(exc).__name__}: {exc}", transient=True)

    def _connect(self, target: netguard.Target) -> http.client.HTTPConnection:
        """A new connection pinned to the checked address."""
        if target.scheme == "https":
            return _PinnedHTTPSConnection(target, self.policy, self._ssl_context)
        return _PinnedHTTPConnection(target, self.policy)


def default_ssl_context() -> ssl.SSLContext:
    """A verifying TLS context, with certifi's roots when installed (current, unlike some system stores)."""
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to the checked addresses only; the Host header still names the host."""

    def __init__(self, target: netguard.Target, policy: DownloadPolicy):
        super().__init__(target.host, target.port, timeout=policy.connect_timeout)
        self.pinned_ips = target.ips
        self.read_timeout = policy.read_timeout
        # http.client drops self.sock when a response says Connection: close, but the body is still read
        # from this socket: the watchdog needs it to interrupt that read.
        self.live_socket: socket.socket | None = None

    def connect(self) -> None:
        self.sock = self._connect_pinned()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self.read_timeout)
        self.live_socket = self.sock

    def _connect_pinned(self) -> socket.socket:
        """Connect to the first checked address that answers (a host may list IPv6 where there is none)."""
        problem: OSError | None = None
        for ip in self.pinned_ips:
            try:
                return socket.create_connection((ip, self.port), self.timeout)
            except OSError as exc:
                problem = exc
        raise problem or OSError(f"no address to connect to for {self.host}")


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """An HTTPS connection to the checked IP; SNI and certificate verification use the host name."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, target: netguard.Target, policy: DownloadPolicy, context: ssl.SSLContext):
        super().__init__(target, policy)
        self.context = context

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self.timeout)  # the handshake is part of connecting
        self.sock = self.context.wrap_socket(self.sock, server_hostname=self.host)
        self.sock.settimeout(self.read_timeout)
        self.live_socket = self.sock


class _ConnectionPool:
    """Idle kept-alive connections per (scheme, host, port, pinned IP)."""

    def __init__(self, connect: Callable[[netguard.Target], http.client.HTTPConnection], max_idle: int):
        self._connect = connect
        self._max_idle = max_idle
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = defaultdict(list)
        self._lock = threading.Lock()

    def take(self, target: netguard.Target) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to the target, or a new one; the flag says whether it was reused."""
        with self._lock:
            idle = self._idle.get(_pool_key(target))
            if idle:
                return idle.pop(), True
        return self._connect(target), False

    def give(self, target: netguard.Target, conn: http.client.HTTPConnection) -> None:
        """Return a connection whose response was read to the end."""
        with self._lock:
            idle = self._idle[_pool_key(target)]
            if len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            conns = [conn for idle in self._idle.values() for conn in idle]
            self._idle.clear()
        for conn in conns:
            conn.close()


def _pool_key(target: netguard.Target) -> tuple:
    return (target.scheme, target.host, target.port, target.ips)


class _Guard:
    """One watched request: the watchdog shuts its socket down once the deadline has passed."""

    def __init__(self, conn: http.client.HTTPConnection):
        self._conn = conn
        self._lock = threading.Lock()
        self._cancelled = False
        self.fired = False

    def fire(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self.fired = True
            sock = getattr(self._conn, "live_socket", None) or self._conn.sock
        if sock is not None:
            try:
                # shutdown, unlike close, wakes a thread blocked in recv on this socket.
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> bool:
        """Stop watching; returns whether the deadline had already fired."""
        with self._lock:
            self._cancelled = True
            return self.fired


class _Watchdog:
    """One daemon thread that enforces every download's total deadline."""

    def __init__(self):
        self._heap: list[tuple[float, int, _Guard]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def watch(self, deadline: float, conn: http.client.HTTPConnection) -> _Guard:
        guard = _Guard(conn)
        with self._cond:
            if self._stopped:
                raise RuntimeError("the downloader is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="download-watchdog", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (deadline, next(self._counter), guard))
            self._cond.notify()
        return guard

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, guard = heapq.heappop(self._heap)
            guard.fire()


def _content_length(headers: http.client.HTTPMessage) -> int | None:
    value = headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _timeout(deadline: float) -> DownloadError:
    return DownloadError("timeout", f"not complete within the {deadline:g} s deadline", transient=True)


def _status_error(reply: _Reply) -> DownloadError:
    """The rejection for a non-200, non-redirect status; 429, 408 and 5xx may pass and are retried."""
    status = reply.status
    wait = backoff.retry_after(reply.headers.get("Retry-After"))
    if status == 429:
        return DownloadError("rate_limited", "HTTP 429 Too Many Requests", transient=True, retry_after=wait)
    if status == 408:
        return DownloadError("timeout", "HTTP 408 Request Timeout", transient=True, retry_after=wait)
    if status >= 500:
        return DownloadError("server_error", f"HTTP {status}", transient=True, retry_after=wait)
    return DownloadError("http_error", f"HTTP {status}")

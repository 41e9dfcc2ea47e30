"""An HTTP server that turns requests into API Gateway REST proxy events and handler results into responses."""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from .cognito import IdTokenVerifier, Unauthorized, claims_for_api_gateway
from .template import ACCOUNT_ID, ApiRoute, CognitoAuthorizer

log = logging.getLogger("imgclf.local.api")

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's own request payload limit


@dataclass(frozen=True)
class BoundRoute:
    """A template route with the handler that serves it."""

    route: ApiRoute
    invoke: Callable[[dict], Any]
    pattern: re.Pattern
    specificity: tuple[int, int]


def compile_route(path: str) -> tuple[re.Pattern, tuple[int, int]]:
    """A regex for an API Gateway resource path: {name} is one segment, {name+} the rest of the path."""
    regex, literal_segments, greedy = "", 0, 0
    for segment in path.strip("/").split("/") if path != "/" else []:
        match = re.fullmatch(r"\{(\w+)(\+?)\}", segment)
        if not match:
            regex += "/" + re.escape(segment)
            literal_segments += 1
        elif match.group(2):
            regex += f"/(?P<{match.group(1)}>.+)"
            greedy += 1
        else:
            regex += f"/(?P<{match.group(1)}>[^/]+)"
    # API Gateway prefers literal segments, then single-segment variables, then greedy ones.
    return re.compile(f"^{regex or '/'}$"), (literal_segments, -greedy)


class Router:
    """Matches a method and path to the most specific route, as API Gateway does."""

    def __init__(self) -> None:
        self.routes: list[BoundRoute] = []

    def add(self, route: ApiRoute, invoke: Callable[[dict], Any]) -> None:
        pattern, specificity = compile_route(route.path)
        self.routes.append(BoundRoute(route, invoke, pattern, specificity))
        self.routes.sort(key=lambda r: r.specificity, reverse=True)

    def match(self, method: str, path: str) -> tuple[BoundRoute | None, dict[str, str], bool]:
        """The route, its path parameters, and whether the path exists under another method."""
        path_known = False
        for bound in self.routes:
            found = bound.pattern.match(path)
            if not found:
                continue
            path_known = True
            if bound.route.method in (method, "ANY"):
                return bound, {k: unquote(v) for k, v in found.groupdict().items()}, True
        return None, {}, path_known


def proxy_event(*, method: str, raw_path: str, headers: dict[str, list[str]], body: bytes,
                route: ApiRoute, path_parameters: dict[str, str], stage: str, binary_media_types: list[str],
                source_ip: str, claims: dict[str, str] | None = None) -> dict:
    """An API Gateway REST (v1) proxy event for one request; a Cognito authorizer's claims in its context."""
    split = urlsplit(raw_path)
    query = parse_qs(split.query, keep_blank_values=True)
    content_type = (headers.get("content-type") or [""])[0].split(";")[0].strip()
    binary = any(fnmatch.fnmatch(content_type, pattern) for pattern in binary_media_types)
    now = datetime.now(UTC)
    request_id = str(uuid.uuid4())
    canonical = {_canonical(name): values for name, values in headers.items()}
    event = {
        "resource": route.path,
        "path": unquote(split.path),
        "httpMethod": method,
        "headers": {name: values[-1] for name, values in canonical.items()} or None,
        "multiValueHeaders": canonical or None,
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "local",
            "resourcePath": route.path,
            "httpMethod": method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{stage}{split.path}",
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": "localhost",
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "sourceIp": source_ip,
                "userAgent": (headers.get("user-agent") or [None])[0],
                "accountId": None,
                "caller": None,
                "user": None,
                "userArn": None,
                "apiKey": None,
            },
            "domainName": "localhost",
            "apiId": "local",
        },
        "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace")) if body else None,
        "isBase64Encoded": bool(body) and binary,
    }
    if claims is not None:
        event["requestContext"]["authorizer"] = {"claims": claims}
    return event


def _canonical(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def _error(status: int, code: str, message: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return status, {"Content-Type": "application/json"}, body


class ApiServer:
    """Serves the template's Api routes on 127.0.0.1, one handler invocation per request."""

    def __init__(self, router: Router, *, stage: str, binary_media_types: list[str], port: int = 0,
                 host: str = "127.0.0.1",
                 authorizers: dict[str, tuple[CognitoAuthorizer, IdTokenVerifier]] | None = None):
        self.router, self.stage, self.binary_media_types = router, stage, binary_media_types
        # Routes whose authorizer is one of these need its pool's id token; IAM is not checked here.
        self.authorizers = authorizers or {}
        self.httpd = ThreadingHTTPServer((host, port), self._request_handler())
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="local-api", daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def respond(self, method: str, raw_path: str, headers: dict[str, list[str]], body: bytes,
                source_ip: str) -> tuple[int, dict[str, str] | list[tuple[str, str]], bytes]:
        """Route one request through its handler and translate the proxy result back."""
        path = urlsplit(raw_path).path
        bound, params, path_known = self.router.match(method, path)
        if bound is None:
            if path_known:
                return _error(405, "method_not_allowed", f"{method} is not allowed on {path}")
            return _error(404, "not_found", f"no route for {method} {path}")
        claims = None
        if bound.route.authorizer in self.authorizers:
            spec, verifier = self.authorizers[bound.route.authorizer]
            try:
                claims = claims_for_api_gateway(verifier.claims((headers.get(spec.header.lower()) or [None])[-1]))
            except Unauthorized as exc:
                log.debug("%s %s refused: %s", method, path, exc)
                # API Gateway's UNAUTHORIZED response, in the shape the template's GatewayResponses give it.
                return _error(401, "UNAUTHORIZED", "Unauthorized")
        if len(body) > MAX_PAYLOAD_BYTES:
            return _error(413, "payload_too_large", "API Gateway accepts at most 10 MB per request")
        event = proxy_event(method=method, raw_path=raw_path, headers=headers, body=body, route=bound.route,
                            path_parameters=params, stage=self.stage,
                            binary_media_types=self.binary_media_types, source_ip=source_ip, claims=claims)
        try:
            result = bound.invoke(event)
        except Exception:
            log.exception("handler raised on %s %s", method, path)
            return _error(502, "internal_error", "Internal server error")
        return self._translate(result)

    @staticmethod
    def _translate(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if not isinstance(result, dict) or "statusCode" not in result:
            log.error("malformed proxy response: %r", result)
            return _error(502, "internal_error", "Malformed Lambda proxy response")
        raw = result.get("body") or ""
        body = base64.b64decode(raw) if result.get("isBase64Encoded") else raw.encode("utf-8")
        headers: list[tuple[str, str]] = list((result.get("headers") or {}).items())
        for name, values in (result.get("multiValueHeaders") or {}).items():
            headers += [(name, str(v)) for v in values if (name, str(v)) not in headers]
        return int(result["statusCode"]), headers, body

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # small responses otherwise wait ~40 ms for a delayed ACK

            def _handle(self) -> None:
                started = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers: dict[str, list[str]] = {}
                for name, value in self.headers.items():
                    headers.setdefault(name.lower(), []).append(value)
                status, out_headers, out_body = server.respond(
                    self.command, self.path, headers, body, self.client_address[0]
                )
                self.send_response(status)
                items = out_headers.items() if isinstance(out_headers, dict) else out_headers
                for name, value in items:
                    if name.lower() not in {"content-length", "connection", "transfer-encoding"}:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(out_body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out_body)
                log.debug("%s %s -> %d in %.1f ms", self.command, self.path, status,
                          (time.perf_counter() - started) * 1000)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                log.debug(format, *args)

        return Handler

"""The SSRF guard: which URLs the collector may fetch, and the one address it will connect to for each.

Image URLs come from search results and user lists, so they are untrusted. A URL passes only when it is
http(s), carries no credentials, and every address its host resolves to is a public one. The address that
was checked is returned with the URL, and the downloader connects to exactly that address, so a DNS answer
that changes between the check and the connection (DNS rebinding) cannot redirect the request.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from .errors import DownloadError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[..., list]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_SHARED_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_DEC_DIGITS = frozenset("0123456789")
_OCT_DIGITS = frozenset("01234567")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Characters a request target may carry as they are; anything else is percent-encoded ('%' stays, so
# existing escapes are kept).
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~-._"


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (ips, port) and what to ask for (host, request_target)."""

    scheme: str
    host: str
    port: int
    ips: tuple[str, ...]  # every address the host resolved to, all checked, in the resolver's order
    request_target: str

    @property
    def ip(self) -> str:
        return self.ips[0]

    @property
    def url(self) -> str:
        default = _DEFAULT_PORTS[self.scheme]
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if self.port == default else f"{host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.request_target}"


def check_url(url: str, *, allow_private: bool = False, resolver: Resolver = socket.getaddrinfo) -> Target:
    """Resolve and check a URL, returning the address to connect to, or raise DownloadError saying why not."""
    parts = _split(url)
    host = _ascii_host(parts.hostname or "")
    port = parts.port or _DEFAULT_PORTS[parts.scheme]
    literal = parse_ip_literal(host)
    addresses = [literal] if literal is not None else _resolve(host, port, resolver)
    for address in addresses:
        problem = address_problem(address, allow_private=allow_private)
        if problem:
            shown = host if literal is None else url
            raise DownloadError("blocked_address", f"{shown} resolves to {address}, {problem}")
    target = quote(parts.path or "/", safe=_URL_SAFE)
    if parts.query:
        target += "?" + quote(parts.query, safe=_URL_SAFE)
    return Target(parts.scheme, host, port, tuple(dict.fromkeys(str(a) for a in addresses)), target)


def address_problem(address: IPAddress, *, allow_private: bool = False) -> str | None:
    """Why the collector must not connect to an address, or None when it may."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        problem = address_problem(embedded, allow_private=allow_private)
        return f"which embeds {embedded}, {problem}" if problem else None
    # Never allowed, not even for the local stack: the instance metadata service lives at 169.254.169.254.
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified or address in _THIS_NETWORK:
        return "an unspecified address"
    if address.is_loopback:  # before is_reserved, which also covers ::1
        return None if allow_private else "a loopback address"
    if address.is_reserved:
        return "a reserved address"
    is_private = address.is_private or address in _SHARED_CGNAT or address in _NAT64_LOCAL
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        is_private = True
    if is_private or not address.is_global:
        return None if allow_private else "a private address"
    return None


def parse_ip_literal(host: str) -> IPAddress | None:
    """The IP address a URL host spells, including the legacy decimal, octal and hex IPv4 forms."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    return _legacy_ipv4(host)


def _split(url: str):
    """Split a URL, refusing schemes other than http(s), missing hosts, credentials and bad ports."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as exc:
        raise DownloadError("bad_url", f"malformed URL {url!r}: {exc}") from exc
    if parts.scheme not in _DEFAULT_PORTS:
        raise DownloadError(
            "bad_url", f"only http and https URLs are fetched, not {parts.scheme or 'none'!r}"
        )
    if not parts.hostname:
        raise DownloadError("bad_url", f"URL without a host: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise DownloadError("bad_url", "URLs with credentials are not fetched")
    return parts


def _ascii_host(host: str) -> str:
    """The host as it goes on the wire: lower case, IDNA-encoded, without a trailing dot."""
    host = host.rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError as exc:
        raise DownloadError("bad_url", f"host {host!r} is not a valid domain name") from exc


def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    """Every address a host name resolves to; all of them are checked, so a mixed answer is refused."""
    last_label = host.rsplit(".", 1)[-1]
    if last_label.isdigit() or last_label.startswith("0x"):
        # Browsers and curl read such a host as an IPv4 address; a name that only looks like one is refused.
        raise DownloadError("bad_url", f"host {host!r} is neither a valid IPv4 address nor a domain name")
    try:
        infos = resolver(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        transient = exc.errno == socket.EAI_AGAIN
        raise DownloadError("dns_error", f"cannot resolve {host!r}: {exc}", transient=transient) from exc
    except UnicodeError as exc:
        raise DownloadError("bad_url", f"host {host!r} is not a valid domain name") from exc
    addresses = []
    for info in infos:
        try:
            addresses.append(ipaddress.ip_address(info[4][0]))
        except ValueError:  # e.g. an IPv6 address with a scope id: link-local, refused anyway
            raise DownloadError("blocked_address", f"{host!r} resolves to {info[4][0]}") from None
    if not addresses:
        raise DownloadError("dns_error", f"{host!r} has no address", transient=True)
    return addresses


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, Teredo, NAT64), which is what it reaches."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse the inet_aton spellings (http://2130706433/, http://0x7f.1/, http://017700000001/) of an IPv4."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        number = _legacy_number(part)
        if number is None:
            return None
        numbers.append(number)
    *leading, last = numbers
    if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(leading):
        value += number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _legacy_number(part: str) -> int | None:
    """One dotted part in decimal, octal (leading 0) or hex (leading 0x)."""
    if part[:2].lower() == "0x":
        digits, base, allowed = part[2:] or "0", 16, _HEX_DIGITS
    elif len(part) > 1 and part.startswith("0"):
        digits, base, allowed = part[1:], 8, _OCT_DIGITS
    else:
        digits, base, allowed = part, 10, _DEC_DIGITS
    # int() alone would also take signs, underscores and non-ASCII digits.
    if not digits or not set(digits) <= allowed:
        return None
    return int(digits, base)

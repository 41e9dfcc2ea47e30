"""The SSRF guard: only http(s) URLs whose every address is public pass, and the checked address is pinned."""

from __future__ import annotations

import socket

import pytest

from imgclf_collector.errors import DownloadError
from imgclf_collector.netguard import check_url

PUBLIC = "93.184.216.34"


def resolver_for(*addresses: str):
    """A stand-in for getaddrinfo that answers the given addresses for every name."""

    def resolve(host, port, type=0):  # noqa: A002 - getaddrinfo's own parameter name
        family = socket.AF_INET6 if ":" in addresses[0] else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    return resolve


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost/",
        "http://10.0.0.5/",
        "http://172.16.3.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "http://224.0.0.251/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://[::1]/",
        "http://[::]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[fe80::1]/",
        "http://[ff02::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[2002:a9fe:a9fe::]/",
        "http://[64:ff9b::7f00:1]/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0x7f000001/",
        "http://017700000001/",
        "http://0177.0.0.1/",
        "http://127.1/",
        "http://127.0.0.1.:8080/",
        "https://10.1.2.3:8443/image.jpg",
    ],
)
def test_urls_that_reach_a_non_public_address_are_blocked(url):
    # GIVEN a URL whose host is, or spells, a loopback, private, link-local, multicast or reserved address
    # WHEN the guard checks it
    # THEN it is blocked before any connection
    with pytest.raises(DownloadError) as caught:
        check_url(url)
    assert caught.value.reason == "blocked_address"


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.jpg",
        "gopher://example.com/",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "http://user:secret@example.com/a.jpg",
        "http:///no-host.jpg",
        "http://example.com:99999/",
        "http://1.2.3.4.5/",
        "http://999.1.1.1/",
    ],
)
def test_urls_that_are_not_plain_http_are_refused_as_bad(url):
    # GIVEN a URL with another scheme, credentials, no host, a bad port or a malformed IP
    # WHEN the guard checks it
    # THEN it is refused as a bad URL
    with pytest.raises(DownloadError) as caught:
        check_url(url, resolver=resolver_for(PUBLIC))
    assert caught.value.reason == "bad_url"


def test_a_name_resolving_to_a_private_address_is_blocked():
    # GIVEN a public-looking name whose DNS answer is the metadata service
    resolve = resolver_for("169.254.169.254")

    # WHEN the guard checks it
    with pytest.raises(DownloadError) as caught:
        check_url("http://images.example.com/cat.jpg", resolver=resolve)

    # THEN it is blocked
    assert caught.value.reason == "blocked_address"


def test_a_name_with_one_private_address_among_public_ones_is_blocked():
    # GIVEN a DNS answer mixing a public and a private address (a rebinding trick)
    resolve = resolver_for(PUBLIC, "10.0.0.1")

    # WHEN the guard checks it
    # THEN the whole name is blocked, not just the private address skipped
    with pytest.raises(DownloadError) as caught:
        check_url("http://images.example.com/cat.jpg", resolver=resolve)
    assert caught.value.reason == "blocked_address"


def test_a_public_name_is_pinned_to_the_address_that_was_checked():
    # GIVEN a name that resolves to a public address
    resolve = resolver_for(PUBLIC)

    # WHEN the guard checks an https URL on it
    target = check_url("https://Images.Example.com/a%20b/cat.jpg?size=large", resolver=resolve)

    # THEN the target keeps the host name for Host and SNI, and the checked IP to connect to
    assert (target.scheme, target.host, target.port, target.ips) == (
        "https",
        "images.example.com",
        443,
        (PUBLIC,),
    )
    assert target.request_target == "/a%20b/cat.jpg?size=large"


def test_spaces_and_non_ascii_in_the_path_are_percent_encoded():
    # GIVEN a URL copied from a page, with a space and an accented letter
    # WHEN the guard checks it
    target = check_url("http://93.184.216.34/photos/été 1.jpg")

    # THEN the request target is valid ASCII
    assert target.request_target == "/photos/%C3%A9t%C3%A9%201.jpg"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/a.jpg", "http://10.0.0.7/a.jpg", "http://[::1]:9000/"]
)
def test_allow_private_addresses_admits_loopback_and_private_hosts(url):
    # GIVEN the local stack's setting that allows private addresses
    # WHEN the guard checks a loopback or private URL
    # THEN it passes
    assert check_url(url, allow_private=True).ip


@pytest.mark.parametrize("url", ["http://169.254.169.254/", "http://[fe80::1]/", "http://224.0.0.1/"])
def test_allow_private_addresses_still_blocks_link_local_and_multicast(url):
    # GIVEN the setting that allows private addresses
    # WHEN the guard checks the metadata service or a multicast group
    # THEN it is still blocked
    with pytest.raises(DownloadError) as caught:
        check_url(url, allow_private=True)
    assert caught.value.reason == "blocked_address"


def test_a_name_that_does_not_resolve_is_a_dns_error():
    # GIVEN a resolver that knows no such name
    def resolve(host, port, type=0):  # noqa: A002
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    # WHEN the guard checks it
    with pytest.raises(DownloadError) as caught:
        check_url("http://no-such-host.invalid/", resolver=resolve)

    # THEN it is a permanent DNS error
    assert caught.value.reason == "dns_error"
    assert not caught.value.transient

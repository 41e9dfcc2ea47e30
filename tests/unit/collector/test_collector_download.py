"""The downloader against a real server on 127.0.0.1: limits, retries, redirects, pinning and keep-alive."""

from __future__ import annotations

import datetime
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from imgclf_collector.download import Downloader, DownloadPolicy
from imgclf_collector.errors import DownloadError
from tests.support.image_server import ImageServer, body, redirect, sequence, trickle
from tests.support.images import photo

LOCAL = DownloadPolicy(allow_private=True, connect_timeout=1, read_timeout=2, deadline=2, retries=0)


def downloader(**changes) -> Downloader:
    """A downloader for the local server whose backoff sleeps are recorded instead of slept."""
    resolver = changes.pop("resolver", socket.getaddrinfo)
    policy = DownloadPolicy(**{**LOCAL.__dict__, **changes})
    slept: list[float] = []
    client = Downloader(policy, sleep=slept.append, resolver=resolver)
    client.slept = slept
    return client


def resolve_to_loopback(host, port, type=0):  # noqa: A002 - getaddrinfo's own parameter name
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]


def failure(client: Downloader, url: str) -> DownloadError:
    with pytest.raises(DownloadError) as caught:
        client.get(url)
    return caught.value


def test_an_image_is_downloaded_and_the_connection_kept_alive(image_server):
    # GIVEN a server with five images
    data = photo(1)
    urls = [image_server.add(f"/{n}.jpg", body(data)) for n in range(5)]

    # WHEN they are downloaded one after the other
    with downloader() as client:
        fetched = [client.get(url) for url in urls]

    # THEN each came whole, over one reused connection
    assert all(f.data == data and f.complete for f in fetched)
    assert len(image_server.connections) == 1


def test_redirects_are_followed_up_to_three(image_server):
    # GIVEN an image behind three redirects
    image_server.add("/img.jpg", body(photo(2)))
    image_server.add("/r3", redirect("/img.jpg"))
    image_server.add("/r2", redirect(image_server.url("/r3"), 301))
    image_server.add("/r1", redirect("/r2", 307))

    # WHEN the first URL is downloaded
    with downloader() as client:
        fetched = client.get(image_server.url("/r1"))

    # THEN the image arrives, and the final URL and hop count are known
    assert fetched.redirects == 3
    assert fetched.url == image_server.url("/img.jpg")


def test_a_fourth_redirect_is_refused(image_server):
    # GIVEN a chain of four redirects
    image_server.add("/img.jpg", body(photo(3)))
    for n in range(4, 0, -1):
        image_server.add(f"/r{n}", redirect(f"/r{n + 1}" if n < 4 else "/img.jpg"))

    # WHEN it is downloaded
    # THEN it is refused, and the image is never requested
    assert failure(downloader(), image_server.url("/r1")).reason == "too_many_redirects"
    assert image_server.hits["/img.jpg"] == 0


def test_a_redirect_to_the_metadata_service_is_blocked(image_server):
    # GIVEN an image URL that redirects to the instance metadata service
    url = image_server.add("/cat.jpg", redirect("http://169.254.169.254/latest/meta-data/iam/"))

    # WHEN it is downloaded (even with private addresses allowed, as on the local stack)
    # THEN the redirect target is checked again and blocked
    assert failure(downloader(), url).reason == "blocked_address"


def test_a_name_resolving_to_loopback_is_blocked_without_connecting_when_private_addresses_are_not_allowed(
    image_server,
):
    # GIVEN a host name that DNS resolves to this machine, where an internal page is served
    image_server.add("/secret", body(b"internal"))

    # WHEN it is downloaded with private addresses not allowed (as in AWS)
    problem = failure(
        downloader(allow_private=False, resolver=resolve_to_loopback),
        f"http://internal.example.com:{image_server.port}/secret",
    )

    # THEN it is blocked and the server never sees a request
    assert problem.reason == "blocked_address"
    assert image_server.hits["/secret"] == 0


def test_a_server_that_trickles_bytes_times_out_at_the_deadline(image_server):
    # GIVEN a server that sends one byte every 50 ms, each read well within the read timeout
    url = image_server.add("/slow.jpg", trickle())

    # WHEN it is downloaded with a 0.5 s deadline
    started = time.monotonic()
    problem = failure(downloader(deadline=0.5, read_timeout=5), url)

    # THEN the download stops at the deadline, as a timeout
    assert problem.reason == "timeout"
    assert time.monotonic() - started < 2


def test_a_server_that_never_sends_its_headers_times_out_at_the_deadline(image_server):
    # GIVEN a server that accepts the request and then says nothing for 5 s
    image_server.add("/silent.jpg", lambda handler: time.sleep(5))

    # WHEN it is downloaded with a 0.5 s deadline and a 10 s read timeout
    started = time.monotonic()
    problem = failure(downloader(deadline=0.5, read_timeout=10), image_server.url("/silent.jpg"))

    # THEN the watchdog ends it at the deadline, not the read timeout
    assert problem.reason == "timeout"
    assert time.monotonic() - started < 2


def test_a_body_declared_larger_than_the_cap_is_refused_before_reading_it(image_server):
    # GIVEN a 200 kB file and a 100 kB cap
    url = image_server.add("/big.jpg", body(b"\xff\xd8\xff" + b"\x00" * 200_000))

    # WHEN it is downloaded
    # THEN it is refused as too large
    assert failure(downloader(max_bytes=100_000), url).reason == "too_large"


def test_a_body_without_length_is_cut_off_at_the_cap(image_server):
    # GIVEN a server streaming 1 MB without a Content-Length
    def endless(handler):
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            for _ in range(100):
                handler.wfile.write(b"\xff" * 10_000)
        except OSError:
            pass

    url = image_server.add("/stream.jpg", endless)

    # WHEN it is downloaded with a 100 kB cap
    # THEN it is refused as too large
    assert failure(downloader(max_bytes=100_000), url).reason == "too_large"


def test_a_429_is_retried_after_the_time_retry_after_asks_for(image_server):
    # GIVEN a server that answers 429 Retry-After: 3 once, then the image
    data = photo(4)
    url = image_server.add(
        "/img.jpg", sequence(body(b"slow down", "text/plain", 429, {"Retry-After": "3"}), body(data))
    )

    # WHEN it is downloaded with one retry allowed
    client = downloader(retries=1)
    fetched = client.get(url)

    # THEN the second attempt got the image, after waiting at least the 3 s asked for
    assert fetched.data == data
    assert client.slept and client.slept[0] >= 3


def test_server_errors_are_retried_with_backoff_until_the_retries_run_out(image_server):
    # GIVEN a server that always answers 503
    url = image_server.add("/img.jpg", body(b"unavailable", "text/plain", 503))

    # WHEN it is downloaded with two retries allowed
    client = downloader(retries=2)
    problem = failure(client, url)

    # THEN it was tried three times, with growing waits, and the rejection says it may pass later
    assert image_server.hits["/img.jpg"] == 3
    assert problem.reason == "server_error" and problem.transient
    assert len(client.slept) == 2


def test_a_retry_after_longer_than_the_limit_is_not_waited_for(image_server):
    # GIVEN a server asking to come back in an hour
    url = image_server.add("/img.jpg", body(b"", "text/plain", 429, {"Retry-After": "3600"}))

    # WHEN it is downloaded with retries allowed
    client = downloader(retries=3)
    problem = failure(client, url)

    # THEN the collector gives up at once rather than hold a worker for an hour
    assert problem.reason == "rate_limited"
    assert client.slept == []


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_client_errors_are_not_retried(image_server, status):
    # GIVEN an image URL answering a 4xx error
    url = image_server.add("/img.jpg", body(b"no", "text/plain", status))

    # WHEN it is downloaded with retries allowed
    problem = failure(downloader(retries=3), url)

    # THEN it was asked once and the rejection is permanent
    assert image_server.hits["/img.jpg"] == 1
    assert problem.reason == "http_error" and not problem.transient


def test_a_body_shorter_than_its_content_length_is_a_transient_failure(image_server):
    # GIVEN a server that promises 10 kB, sends 1 kB and closes
    def short(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "10000")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.wfile.write(b"\xff\xd8\xff" + b"\x00" * 1000)
        handler.close_connection = True

    url = image_server.add("/short.jpg", short)

    # WHEN it is downloaded
    problem = failure(downloader(), url)

    # THEN it is not taken as a complete file
    assert problem.reason == "connection_error" and problem.transient


def test_a_page_that_is_not_an_image_stops_after_its_first_bytes(image_server):
    # GIVEN an image URL that serves a 1 MB HTML page
    url = image_server.add("/img.jpg", body(b"<!DOCTYPE html>" + b" " * 1_000_000, "image/jpeg"))

    # WHEN it is downloaded with a check on the first bytes
    with downloader() as client:
        fetched = client.get(url, stop_if=lambda head: not head.startswith(b"\xff\xd8"))

    # THEN only the head came back, marked incomplete
    assert not fetched.complete
    assert len(fetched.data) < 100_000


def test_the_connection_goes_to_the_checked_address_with_the_host_name_in_the_host_header(image_server):
    # GIVEN a host name that the (stand-in) DNS resolves to the test server
    image_server.add("/cat.jpg", body(photo(5)))

    # WHEN a URL on that name is downloaded
    with downloader(resolver=resolve_to_loopback) as client:
        client.get(f"http://images.test:{image_server.port}/cat.jpg")

    # THEN the server saw the name, not the IP, in the Host header
    assert image_server.host_headers == [f"images.test:{image_server.port}"]


def self_signed(tmp_path, name: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `name`, and a client context that trusts only it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_file, key_file)
    return server, ssl.create_default_context(cafile=str(cert_file))


def test_https_to_a_pinned_address_verifies_the_certificate_for_the_host_name(tmp_path):
    # GIVEN an HTTPS server on 127.0.0.1 with a certificate for images.test, and DNS pointing that name at it
    server_tls, client_tls = self_signed(tmp_path, "images.test")
    server = ImageServer(tls=server_tls).start()
    data = photo(6)
    server.add("/cat.jpg", body(data))
    try:
        # WHEN https://images.test/... is downloaded
        policy = DownloadPolicy(**{**LOCAL.__dict__})
        with Downloader(policy, resolver=resolve_to_loopback, ssl_context=client_tls) as client:
            fetched = client.get(f"https://images.test:{server.port}/cat.jpg")
    finally:
        server.stop()

    # THEN the TLS handshake used the name (SNI and certificate check) while connecting to the pinned IP
    assert fetched.data == data


def test_https_with_a_certificate_for_another_name_is_refused(tmp_path):
    # GIVEN an HTTPS server whose certificate is for another name
    server_tls, client_tls = self_signed(tmp_path, "other.test")
    server = ImageServer(tls=server_tls).start()
    server.add("/cat.jpg", body(photo(7)))
    try:
        # WHEN images.test is downloaded from it
        policy = DownloadPolicy(**{**LOCAL.__dict__})
        with Downloader(policy, resolver=resolve_to_loopback, ssl_context=client_tls) as client:
            problem = failure(client, f"https://images.test:{server.port}/cat.jpg")
    finally:
        server.stop()

    # THEN the certificate is refused
    assert problem.reason == "tls_error"


def test_the_next_checked_address_is_tried_when_the_first_refuses(image_server):
    # GIVEN a name whose first address (IPv6 loopback) has nothing listening and whose second is the server
    data = photo(8)
    image_server.add("/cat.jpg", body(data))

    def resolve(host, port, type=0):  # noqa: A002
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]

    # WHEN a URL on that name is downloaded
    with downloader(resolver=resolve) as client:
        fetched = client.get(f"http://dual.test:{image_server.port}/cat.jpg")

    # THEN the download went to the second checked address
    assert fetched.data == data

"""The guarded fetch: a canary server on loopback is never reached through a refused URL, in
any spelling or through a redirect; pinned connections, size, time and redirect limits."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sdworker.core import netguard
from sdworker.core.netguard import FetchError, FetchPolicy, UrlRefused, address_refusal, fetch


class Canary(ThreadingHTTPServer):
    """Counts every request; paths: /ok, /big, /slow, /redirect?to=URL, /status/N."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: list[str] = []

    @property
    def port(self) -> int:
        return int(self.server_address[1])


class _Handler(BaseHTTPRequestHandler):
    server: Canary

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect?to="))
            self.end_headers()
            return
        if self.path.startswith("/status/"):
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.end_headers()
            return
        if self.path == "/slow":
            time.sleep(3)
        body = b"x" * (4096 if self.path == "/big" else 16)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client gave up
            self.wfile.write(body)


@pytest.fixture
def canary() -> Iterator[Canary]:
    server = Canary()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


GUARDED = FetchPolicy(timeout_s=5)
OPEN = FetchPolicy(allow_private=True, timeout_s=5)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "localhost",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "0.0.0.0",
    ],
)
def test_every_spelling_of_loopback_is_refused_before_connecting(canary: Canary, host: str) -> None:
    with pytest.raises(UrlRefused, match="address; only public addresses"):
        fetch(f"http://{host}:{canary.port}/ok", GUARDED)
    assert canary.hits == []


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00::1", "private"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "non-public"),
        ("::", "unspecified"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
    ],
)
def test_non_public_addresses_are_classified(address: str, reason: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize("address", ["240.0.0.1", "198.18.0.1", "192.0.2.1", "2001:db8::1"])
def test_reserved_and_documentation_ranges_are_refused(address: str) -> None:
    # Python versions disagree on which label these get; refused they are in every one
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("file:///etc/passwd", "http or https"),
        ("ftp://example.com/x.png", "http or https"),
        ("gopher://127.0.0.1:70/", "http or https"),
        ("http://user:pw@example.com/x.png", "user name or password"),
        ("http:///x.png", "no host"),
        ("http://example.com:99999/x.png", "not a valid URL"),
    ],
)
def test_malformed_or_foreign_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason):
        fetch(url, OPEN)


def test_allowed_private_fetch_reads_the_body(canary: Canary) -> None:
    assert fetch(f"http://127.0.0.1:{canary.port}/ok", OPEN) == b"x" * 16


def test_error_status_is_refused(canary: Canary) -> None:
    with pytest.raises(FetchError, match="answered HTTP 404"):
        fetch(f"http://127.0.0.1:{canary.port}/status/404", OPEN)


def test_body_over_the_limit_is_refused(canary: Canary) -> None:
    with pytest.raises(FetchError, match="larger than 1000 bytes"):
        fetch(
            f"http://127.0.0.1:{canary.port}/big", FetchPolicy(allow_private=True, max_bytes=1000)
        )


def test_a_slow_answer_is_cut_off(canary: Canary) -> None:
    with pytest.raises(FetchError, match=r"did not answer within 0\.5 s"):
        fetch(
            f"http://127.0.0.1:{canary.port}/slow", FetchPolicy(allow_private=True, timeout_s=0.5)
        )


def test_redirects_are_followed_a_few_times_only(canary: Canary) -> None:
    base = f"http://127.0.0.1:{canary.port}"
    assert fetch(f"{base}/redirect?to=/ok", OPEN) == b"x" * 16
    chain = "/ok"
    for _ in range(4):
        chain = f"/redirect?to={chain}"
    with pytest.raises(FetchError, match="redirects more than 3 times"):
        fetch(base + chain, OPEN)


@pytest.fixture
def loopback_one_is_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend 127.0.0.1 is a public address (so the canary plays an outside server) while
    every other address keeps its real classification."""
    real = netguard.address_refusal

    def refusal(ip: netguard.IPAddress) -> str | None:
        return None if str(ip) == "127.0.0.1" else real(ip)

    monkeypatch.setattr(netguard, "address_refusal", refusal)


@pytest.mark.usefixtures("loopback_one_is_public")
def test_a_redirect_into_a_private_address_is_refused(canary: Canary) -> None:
    target = f"http://127.0.0.2:{canary.port}/ok"
    with pytest.raises(UrlRefused, match="loopback address"):
        fetch(f"http://127.0.0.1:{canary.port}/redirect?to={target}", GUARDED)
    assert len(canary.hits) == 1  # the redirect itself; its private target never


@pytest.mark.usefixtures("loopback_one_is_public")
def test_the_connection_goes_to_the_address_that_was_checked(
    canary: Canary, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolver that answers a public address first and a private one next (DNS rebinding)
    is asked once per hop: the checked answer is the one connected to."""
    answers = ["127.0.0.1", "10.0.0.1"]
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list[object]:
        if host != "images.invalid":
            return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        asked.append(host)
        address = answers.pop(0)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    assert fetch(f"http://images.invalid:{canary.port}/ok", GUARDED) == b"x" * 16
    assert asked == ["images.invalid"]
    assert canary.hits == ["/ok"]


def test_a_host_that_does_not_resolve_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)  # no DNS query leaves the machine
    with pytest.raises(FetchError, match="does not resolve"):
        fetch("http://no-such-host.invalid/x.png", GUARDED)

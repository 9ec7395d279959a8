"""Guarded outbound HTTP: the only way sdworker reaches a URL a client gave it.

Image URLs (every image field of every request format) and webhook targets come from whoever
holds the API key, while the worker sits inside a provider's network. So a URL is fetched only
when:

* its scheme is http or https, and it carries no credentials;
* every address its host resolves to is public: loopback, private, link-local, multicast,
  shared (CGNAT), reserved and unspecified addresses are refused in every spelling (``127.1``,
  ``2130706433``, ``0x7f000001``, ``[::1]``, ``[::ffff:127.0.0.1]``...), because the check runs on
  what the resolver returns, not on the text;
* the connection goes to the very address that was checked (a second DNS answer cannot swap
  it), with TLS still verified against the host name;
* each redirect passes the same check, and only a few are followed; credentials
  (``Authorization``, ``Cookie``) go to the first origin only, never to where it redirects
  (a CivitAI download redirects to a presigned bucket URL, which refuses a second one);
* the body and the whole exchange are bounded in size and time; a large download streams
  into a file (``sink``) instead of memory.

An operator who needs private addresses (a bucket on the LAN, a webhook on localhost) allows
them with ``SDWORKER_ALLOW_PRIVATE_URLS``. Refusals never say what a private address would have
answered, so the endpoint is no port scanner.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_REDIRECTS = {301, 302, 303, 307, 308}
_CHUNK = 64 * 1024
#: headers that carry a credential: sent to the first origin only, never across a redirect
#: to another scheme, host or port (as httpx and browsers do)
_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})
#: the well-known NAT64 prefix: its addresses embed an IPv4 address in the last 32 bits
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


class FetchError(ValueError):
    """A guarded request that did not happen or failed; ``str()`` is the client's reason."""


class UrlRefused(FetchError):
    """The URL itself is refused (scheme, credentials, a non-public address): no retry helps."""


class FetchFailed(FetchError):
    """The exchange failed (no connection, timeout, TLS, an error status, too large)."""


@dataclass(frozen=True)
class FetchPolicy:
    """Where and how much a guarded request may fetch."""

    allow_private: bool = False
    max_bytes: int = 50 * 1024 * 1024
    timeout_s: float = 30.0
    max_redirects: int = 3


class Sink(Protocol):
    """Where a streamed body goes (an open binary file, or anything that writes bytes)."""

    def write(self, data: bytes, /) -> Any: ...


@dataclass(frozen=True)
class Response:
    """A finished exchange: the final URL's status, headers and (bounded) body; the body is
    empty when a 2xx answer was streamed into a sink."""

    url: str
    status: int
    headers: Message = field(repr=False)
    body: bytes = field(repr=False)


def address_refusal(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (``"loopback"``, ``"private"``...), or None."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            reason = address_refusal(embedded)
            if reason is not None:
                return reason
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    )
    for reason, hit in checks:
        if hit:
            return reason
    return None if ip.is_global else "non-public"


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str


def check_url(url: str) -> _Target:
    """The parts of an http(s) URL the guard accepts; :class:`UrlRefused` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlRefused(f"is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UrlRefused("must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("must not carry a user name or password")
    host = parts.hostname
    if not host:
        raise UrlRefused("has no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return _Target(scheme, host, port or (443 if scheme == "https" else 80), path)


#: (address family, socket address) as ``getaddrinfo`` gives them
Address = tuple[int, Any]


def resolve(host: str, port: int, *, allow_private: bool) -> Address:
    """The address to connect to for ``host``; every address it resolves to must be public
    unless ``allow_private``. Raises :class:`UrlRefused`, or :class:`FetchFailed` when the
    name does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed("has a host name that does not resolve") from exc
    if not infos:
        raise FetchFailed("has a host name that does not resolve")
    if not allow_private:
        for info in infos:
            reason = address_refusal(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
            if reason is not None:
                raise UrlRefused(
                    f"points to a {reason} address; only public addresses may be fetched "
                    "(an operator allows private ones with SDWORKER_ALLOW_PRIVATE_URLS)"
                )
    return infos[0][0], infos[0][4]


def _connect(address: Address, timeout: float | None) -> socket.socket:
    """A TCP connection to exactly ``address`` (no second name lookup, unlike
    ``socket.create_connection``)."""
    family, sockaddr = address
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


class _PinnedHTTP(http.client.HTTPConnection):
    """An HTTP connection to an address resolved and checked beforehand."""

    def __init__(self, host: str, port: int, *, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = _connect(self._address, self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a checked address; the certificate is still verified for the host name."""

    def __init__(self, host: str, port: int, *, address: Address, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = _connect(self._address, self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def request(
    method: str,
    url: str,
    *,
    policy: FetchPolicy,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    follow_redirects: bool = True,
    sink: Sink | None = None,
) -> Response:
    """One guarded HTTP exchange; raises :class:`FetchError` with the client's reason.

    With a ``sink``, a 2xx answer's body is written there as it arrives (bounded as ever)
    instead of being kept in memory."""
    deadline = time.monotonic() + policy.timeout_s
    hops = policy.max_redirects if follow_redirects else 0
    sent = dict(headers or {})
    origin = _origin(url)
    for _ in range(hops + 1):
        target = check_url(url)
        address = resolve(target.host, target.port, allow_private=policy.allow_private)
        response = _exchange(method, target, address, body, sent, policy, deadline, sink)
        location = response.headers.get("location")
        if not (follow_redirects and response.status in _REDIRECTS and location):
            return Response(url, response.status, response.headers, response.body)
        url = urljoin(url, location)
        if _origin(url) != origin:
            sent = {k: v for k, v in sent.items() if k.lower() not in _CREDENTIALS}
        if response.status == 303 or (response.status in (301, 302) and method != "HEAD"):
            method, body = "GET", None
    raise FetchFailed(f"redirects more than {hops} times")


def _origin(url: str) -> tuple[str, str, int | None]:
    """A URL's scheme, host and port: a redirect elsewhere drops the credentials."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ("", url, None)
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    return (scheme, (parts.hostname or "").lower(), port or default)


def _exchange(
    method: str,
    target: _Target,
    address: Address,
    body: bytes | None,
    headers: dict[str, str],
    policy: FetchPolicy,
    deadline: float,
    sink: Sink | None = None,
) -> Response:
    kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    conn = kind(target.host, target.port, address=address, timeout=_left(deadline))
    try:
        conn.request(method, target.path, body=body, headers={"User-Agent": "sdworker", **headers})
        answer = conn.getresponse()
        streamed = sink if sink is not None and 200 <= answer.status < 300 else None
        data = b"" if answer.status in _REDIRECTS else _read(answer, policy, deadline, streamed)
        return Response("", answer.status, answer.headers, data)
    except FetchError:
        raise
    except TimeoutError as exc:
        raise FetchFailed(f"did not answer within {policy.timeout_s:g} s") from exc
    except ssl.SSLError as exc:
        raise FetchFailed(f"failed the TLS handshake ({exc.reason or 'certificate'})") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchFailed("could not be reached (the connection failed)") from exc
    finally:
        conn.close()


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


def _read(
    answer: http.client.HTTPResponse,
    policy: FetchPolicy,
    deadline: float,
    sink: Sink | None = None,
) -> bytes:
    declared = answer.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > policy.max_bytes:
        raise FetchFailed(f"is larger than {policy.max_bytes} bytes")
    # the socket the response reads from (a closing connection hands its own over to it)
    sock = getattr(getattr(answer.fp, "raw", None), "_sock", None)
    chunks: list[bytes] = []
    size = 0
    while True:
        if sock is not None:
            sock.settimeout(_left(deadline))  # the whole exchange is bounded, not each read
        chunk = answer.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > policy.max_bytes:
            raise FetchFailed(f"is larger than {policy.max_bytes} bytes")
        if sink is not None:
            sink.write(chunk)
        else:
            chunks.append(chunk)


def fetch(url: str, policy: FetchPolicy) -> bytes:
    """GET ``url`` through the guard; anything but a 2xx answer is refused."""
    response = request("GET", url, policy=policy)
    if not 200 <= response.status < 300:
        raise FetchFailed(f"answered HTTP {response.status}")
    return response.body

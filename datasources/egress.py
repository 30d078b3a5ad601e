"""``EgressTransport``: the httpx transport of every job request, enforcing the
policy's outbound HTTP rules on the address actually used.

For each request (the first, each redirect hop, OAuth2 token requests, link pages):

1. the host is resolved (``getaddrinfo``) unless it is an address;
2. ``JobPolicy.check_request(host, addresses)`` checks the name and *every* address
   (``NotAllowedError`` otherwise: nothing is sent);
3. the request is sent to one of those checked addresses: the URL's host is replaced
   by the address, the ``Host`` header and TLS server name (SNI, certificate check)
   stay the name. A second lookup by the HTTP library, which a DNS answer changing in
   between (DNS rebinding) could point elsewhere, never happens. The addresses are
   tried in order while connecting fails.

Proxies from the environment (``HTTP_PROXY``, ...) are not used for job requests.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

import httpx

from datasources.policy import JobPolicy

__all__ = ["EgressTransport", "Resolver", "resolve"]

#: ``(host, port) -> addresses``; raises ``OSError`` when the name does not resolve.
Resolver = Callable[[str, int], list[str]]
_DEFAULT_PORTS = {"http": 80, "https": 443}


def resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host``, in ``getaddrinfo``'s order, without repeats."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class EgressTransport(httpx.BaseTransport):
    """An ``httpx.HTTPTransport`` that sends only where ``policy`` allows (above)."""

    def __init__(self, policy: JobPolicy, resolver: Resolver = resolve) -> None:
        self.policy = policy
        self._resolve = resolver
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.raw_host.decode("ascii")
        try:
            ipaddress.ip_address(host)
            addresses = [host]
        except ValueError:
            port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
            try:
                addresses = self._resolve(host, port)
            except OSError as exc:
                raise httpx.ConnectError(
                    f"cannot resolve {host!r}: {exc}", request=request
                ) from None
        self.policy.check_request(url.host, addresses)
        failure: httpx.ConnectError | None = None
        for address in addresses:
            try:
                return self._inner.handle_request(_pinned(request, host, address))
            except httpx.ConnectError as exc:
                failure = exc  # nothing was sent: try the next address
        assert failure is not None
        raise failure

    def close(self) -> None:
        self._inner.close()


def _pinned(request: httpx.Request, host: str, address: str) -> httpx.Request:
    """``request`` sent to ``address``, still naming ``host`` (Host header, SNI)."""
    if address == host:
        return request
    extensions = dict(request.extensions)
    if request.url.scheme == "https":
        extensions["sni_hostname"] = host
    return httpx.Request(
        request.method,
        request.url.copy_with(host=address),
        headers=request.headers,  # Host was set from the URL when the request was built
        stream=request.stream,
        extensions=extensions,
    )

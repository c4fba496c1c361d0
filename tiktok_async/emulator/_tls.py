"""TLS for the emulator (`EmulatorConfig(tls=True)`, `serve --tls`): a throwaway CA and a
server certificate made by `trustme` when the emulator starts, never written to disk but
for the CA's public certificate (what a client passes as `verify=` or `--ca-file`).

trustme is a test dependency (the `dev` and `emulator-tls` extras), imported here only.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence

__all__ = ["ServerTLS", "certificate_hosts", "server_tls"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_ANY = frozenset({"", "0.0.0.0", "::"})


class ServerTLS:
    """The server's `ssl.SSLContext` and the PEM of the CA that signed its certificate."""

    __slots__ = ("ca_pem", "context")

    def __init__(self, context: ssl.SSLContext, ca_pem: bytes) -> None:
        self.context = context
        self.ca_pem = ca_pem


def certificate_hosts(host: str) -> list[str]:
    """The names the certificate is for: loopback's, and `host` when it is one address."""
    names = list(_LOOPBACK)
    bare = host.strip("[]")
    if bare not in _ANY and bare not in names:
        names.append(bare)
    return names


def server_tls(hosts: Sequence[str]) -> ServerTLS:
    """A new CA and a certificate it signs for `hosts` (names or IP addresses)."""
    try:
        import trustme
    except ImportError:  # pragma: no cover - trustme is in the dev extra
        raise RuntimeError("the emulator serves TLS with a certificate made by trustme: "
                           "pip install 'tiktok-async[emulator-tls]'") from None
    for name in hosts:
        _check_host(name)
    authority = trustme.CA(organization_name="tiktok_async emulator")
    certificate = authority.issue_cert(*hosts)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    return ServerTLS(context, authority.cert_pem.bytes())


def _check_host(name: str) -> None:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"cannot make a certificate for host {name!r}") from None

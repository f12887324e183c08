"""Fixtures of the auth tests: a PKI, TLS, htpasswd and token registries, the token server.

Test modules load them with ``pytest_plugins = ["tests.support.authfixtures"]`` (and must not
import this module themselves: pytest would then not rewrite its asserts). Every server lives
for the whole session (each starts in a fraction of a second); tests stay independent by working
in their own repositories (the ``repo`` fixture) and by counting registry and token requests
only from a ``mark()`` taken just before the command they check. Users, passwords and the ACL
are in :mod:`tests.support.authdata`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.authdata import ACL, ANONYMOUS_ACL, BASIC_REALM, USERS
from tests.support.pki import Pki, make_pki
from tests.support.registry import Registry, write_htpasswd
from tests.support.tokenserver import TokenServer

__all__ = [
    "basic_registry",
    "htpasswd_file",
    "mtls_registry",
    "pki",
    "tls_registry",
    "token_registry",
    "token_server",
]


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Return the session's CA, server and client certificates, and the token signing key."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def htpasswd_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a bcrypt htpasswd file with alice and bob."""
    return write_htpasswd(tmp_path_factory.mktemp("htpasswd") / "htpasswd", USERS)


@pytest.fixture(scope="session")
def tls_registry(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, htpasswd_file: Path
) -> Iterator[Registry]:
    """Start a registry that serves HTTPS (certificate of ``pki.ca``) and wants Basic auth."""
    with Registry(
        tmp_path_factory.mktemp("registries"),
        name="tls-basic",
        tls=pki.server,
        ca=pki.ca,
        htpasswd=(htpasswd_file, BASIC_REALM),
    ) as reg:
        yield reg


@pytest.fixture(scope="session")
def basic_registry(
    tmp_path_factory: pytest.TempPathFactory, htpasswd_file: Path
) -> Iterator[Registry]:
    """Start a plain-HTTP registry that wants Basic auth (to test credential sources alone)."""
    with Registry(
        tmp_path_factory.mktemp("registries"),
        name="http-basic",
        htpasswd=(htpasswd_file, BASIC_REALM),
    ) as reg:
        yield reg


@pytest.fixture(scope="session")
def mtls_registry(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Registry]:
    """Start an HTTPS registry that requires a client certificate signed by ``pki.ca``."""
    with Registry(
        tmp_path_factory.mktemp("registries"),
        name="mtls",
        tls=pki.server,
        ca=pki.ca,
        client_ca=pki.ca,
        client_cert=pki.client,
    ) as reg:
        yield reg


@pytest.fixture(scope="session")
def token_server(pki: Pki) -> Iterator[TokenServer]:
    """Start the token service (``USERS``, ``ACL``, ``ANONYMOUS_ACL``) on a loopback port."""
    with TokenServer(
        signing_key=pki.signing_key,
        signing_cert=pki.signing_cert,
        users=USERS,
        acl=ACL,
        anonymous=ANONYMOUS_ACL,
    ) as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, token_server: TokenServer
) -> Iterator[Registry]:
    """Start a plain-HTTP registry that trusts the tokens of ``token_server``."""
    with Registry(
        tmp_path_factory.mktemp("registries"),
        name="token",
        token=token_server.registry_config(),
    ) as reg:
        yield reg

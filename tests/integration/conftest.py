"""Fixtures of the integration suite: real docker-registry processes and per-test repositories.

The registries live for the whole session (starting one costs about a tenth of a second, but
there is no need to pay it per test); tests stay independent because each one works in its own
repositories, named after the test (see ``repo``), and counts requests only from a ``mark()``
taken just before the command it checks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.registry import Registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Start the main registry (source, and destination of same-registry copies)."""
    with Registry(tmp_path_factory.mktemp("registries"), name="main") as reg:
        yield reg


@pytest.fixture(scope="session")
def other_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """Start a second registry, the destination of cross-registry copies."""
    with Registry(tmp_path_factory.mktemp("registries"), name="other") as reg:
        yield reg


def repository_name(nodeid: str) -> str:
    """Turn a pytest node id into a valid, unique, lowercase repository path.

    ``tests/integration/test_mount.py::test_x[a-B]`` becomes ``test-mount/test-x-a-b``: the
    module and the test (with its parameters), each component made of lowercase alphanumerics
    joined by single dashes, which the distribution grammar always accepts.
    """
    path, _, test = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1].removesuffix(".py")

    def component(text: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"

    return f"{component(module)}/{component(test)}"


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """Return this test's repository prefix; use ``f"{repo}/src"``, ``f"{repo}/dst"``, …"""
    return repository_name(request.node.nodeid)

"""Fixtures every test gets."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Give each test its own ``$XDG_CACHE_HOME``, so orascp's blob-location cache starts empty.

    Without it, a copy could mount a blob that another test pushed to the same session registry,
    and the user's own cache would be touched. Tests of the cache pass ``--blob-cache``.
    """
    path = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(path))
    return path

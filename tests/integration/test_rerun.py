"""Running the same copy again finds everything in place and moves nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.artifacts import fetch_manifest, layout_tags, multi_platform, push
from tests.support.checks import assert_clean_layout, layout_snapshot
from tests.support.cli import STATUS_RE, run_orascp, status_line
from tests.support.registry import Registry


@pytest.mark.integration
@pytest.mark.parametrize("destination", ["same-registry", "other-registry", "layout"])
def test_second_run_only_reports_exists(
    destination: str, registry: Registry, other_registry: Registry, repo: str, tmp_path: Path
) -> None:
    art = multi_platform(repo)
    src = f"{repo}/src"
    push(registry.host, src, art, "v1")
    dst_registry = other_registry if destination == "other-registry" else registry
    out = tmp_path / "out"
    if destination == "layout":
        args = ["cp", f"{registry.host}/{src}:v1", "--to-oci-layout", f"{out}:v1"]
    else:
        args = ["cp", f"{registry.host}/{src}:v1", f"{dst_registry.host}/{repo}/dst:v1"]

    first = run_orascp(*args)
    assert first.returncode == 0, first.describe()
    assert any(s.verb in ("Copied", "Mounted") for s in first.statuses)
    before = layout_snapshot(out) if destination == "layout" else None

    marks = {id(r): r.mark() for r in (registry, other_registry)}
    second = run_orascp(*args)

    assert second.returncode == 0, second.describe()
    assert second.stderr == ""
    status, summary = second.lines[:-2], second.lines[-2:]
    assert summary == first.lines[-2:]
    assert summary[-1] == f"Digest: {art.digest}"
    assert status, "the second run printed no status line"
    assert all(STATUS_RE.match(line) for line in status), status
    assert {s.verb for s in second.statuses} == {"Exists"}
    assert status_line("Exists", art.root) in status

    for reg in (registry, other_registry):
        counts = reg.counts(marks[id(reg)])
        assert counts["blob GET"] == 0
        assert counts["upload POST"] + counts["upload PUT"] + counts["upload PATCH"] == 0
        assert counts["mount POST 201"] + counts["mount POST 202"] == 0

    if destination == "layout":
        assert layout_snapshot(out) == before
        assert layout_tags(out) == {"v1": art.digest}
        assert_clean_layout(out, art)
    else:
        dst = f"{repo}/dst"
        assert fetch_manifest(dst_registry.host, dst, "v1") == (art.root.media_type, art.root.data)

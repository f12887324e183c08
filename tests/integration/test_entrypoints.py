"""``python -m orascp`` behaves exactly like the ``orascp`` console script."""

from __future__ import annotations

import pytest

from tests.support.artifacts import fetch_manifest, push, sample_image
from tests.support.cli import orascp_command, run_orascp, status_line
from tests.support.registry import Registry


@pytest.mark.integration
def test_module_and_console_script_copy_alike(registry: Registry, repo: str) -> None:
    host, src = registry.host, f"{repo}/src"
    art = sample_image(repo, layers=2, size=4096)
    push(host, src, art, "v1")
    assert orascp_command(module=True)[1:] == ["-m", "orascp"]

    results = {}
    for module in (False, True):
        dst = f"{repo}/{'module' if module else 'script'}"
        mark = registry.mark()
        res = run_orascp("cp", f"{host}/{src}:v1", f"{host}/{dst}:v1", module=module)
        assert res.returncode == 0, res.describe()
        counts = registry.counts(mark)
        assert counts["blob GET"] == 0
        assert counts["mount POST 201"] == len(art.blobs)
        assert fetch_manifest(host, dst, "v1") == (art.root.media_type, art.root.data)
        results[module] = res

    script, module = results[False], results[True]
    assert sorted(module.lines[:-3]) == sorted(script.lines[:-3])
    assert sorted(script.lines[:-3]) == sorted(
        [status_line("Mounted", b) for b in art.blobs] + [status_line("Copying", art.root)]
    )
    assert module.lines[-3:] == [
        status_line("Copied", art.root),
        f"Copied [registry] {host}/{src}:v1 => [registry] {host}/{repo}/module:v1",
        f"Digest: {art.digest}",
    ]
    assert script.lines[-1] == module.lines[-1]


@pytest.mark.integration
def test_module_and_console_script_fail_alike(registry: Registry, repo: str) -> None:
    args = ("cp", f"{registry.host}/{repo}/Src:v1", f"{registry.host}/{repo}/dst:v1")
    script = run_orascp(*args)
    module = run_orascp(*args, module=True)
    assert script.returncode == module.returncode == 2
    assert script.stderr == module.stderr
    assert script.stderr.startswith("Error: ")
    assert script.stdout == module.stdout == ""


@pytest.mark.integration
def test_module_version_matches_console_script() -> None:
    script = run_orascp("--version")
    module = run_orascp("--version", module=True)
    assert script.returncode == module.returncode == 0
    assert script.stdout == module.stdout
    assert script.stdout.startswith("orascp ")

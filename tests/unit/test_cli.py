"""Run the real command in a subprocess: usage errors, --version, a layout-to-layout copy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orascp import __version__
from tests.support.artifacts import (
    OCI_MANIFEST,
    files_under,
    layout_blob,
    layout_tags,
    sample_image,
    write_layout,
)

SHA = "sha256:" + "0123456789abcdef" * 4


def orascp(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orascp", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def assert_one_error_line(stderr: str, *needles: str) -> str:
    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error: ")]
    assert len(errors) == 1, stderr
    assert all(line.startswith(("Error: ", "Hint: ")) for line in lines), stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["cp", "localhost:5000/App:v1", "localhost:5000/b:v1"], ['"App"', "lowercase"]),
        (["cp", "localhost:5000/a:v1", "localhost:5000/b:-bad"], ['"-bad"']),
        (["cp", "localhost:99999/a:v1", "localhost:5000/b:v1"], ['invalid port "99999"']),
        (["cp", "::1/a:v1", "localhost:5000/b:v1"], ["brackets"]),
        (["cp", "localhost:5000/a@sha256:abc", "localhost:5000/b:v1"], ["invalid digest"]),
        (["cp", "localhost:5000/a:v1", "localhost:5000/b:v1,,x"], ["extra tag is empty"]),
        (["cp", "localhost:5000/a:v1", "localhost:5000"], ["missing repository"]),
        (["cp", "--from-oci-layout", ":v1", "--to-oci-layout", "out"], ["layout path is empty"]),
        (
            ["cp", "localhost:5000/a:v1", f"localhost:5000/b:v1@{SHA}"],
            ["both a tag and a digest"],
        ),
        (["cp", "localhost:5000/a", "localhost:5000/b:v1"], ["no tag or digest"]),
        (["cp", "--from-oci-layout", "./src", "--to-oci-layout", "./dst"], ["no tag or digest"]),
        (
            ["cp", "--to-oci-layout", "--to-plain-http", "localhost:5000/a:v1", "out"],
            ["--to-plain-http"],
        ),
    ],
)
def test_usage_errors_exit_2_with_one_error_line(
    tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    result = orascp(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert_one_error_line(result.stderr, *needles)
    assert list(tmp_path.iterdir()) == [], "a usage error wrote to the disk"


def test_version() -> None:
    result = orascp("--version")
    assert result.returncode == 0
    assert result.stdout == f"orascp {__version__}\n"
    assert result.stderr == ""


def test_version_console_script() -> None:
    script = Path(sys.executable).with_name("orascp")
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout == f"orascp {__version__}\n"


def _imported(code: str) -> dict[str, object]:
    probe = (
        "import sys, json\n"
        f"{code}\n"
        "print(json.dumps({m: m in sys.modules for m in ('rich', 'typer', 'click', 'httpx')}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def test_library_modules_do_not_import_the_cli_stack() -> None:
    loaded = _imported(
        "import orascp.engine, orascp.registry.client, orascp.ocilayout, orascp.targets"
    )
    assert loaded["rich"] is False
    assert loaded["typer"] is False
    assert loaded["click"] is False
    assert loaded["httpx"] is True  # the probe can see imports at all


def test_version_imports_neither_httpx_nor_typer_nor_rich() -> None:
    loaded = _imported(
        "sys.argv = ['orascp', '--version']\n"
        "from orascp.cli.app import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code"
    )
    assert loaded == {"rich": False, "typer": False, "click": False, "httpx": False}


@pytest.mark.parametrize("argv", [["--help"], ["cp", "--help"]])
def test_help_imports_neither_httpx_nor_rich_rendering(argv: list[str]) -> None:
    loaded = _imported(
        f"sys.argv = ['orascp', *{argv!r}]\n"
        "from orascp.cli.app import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), exc.code\n"
        "assert 'rich.markdown' not in sys.modules and 'rich.live' not in sys.modules\n"
        "assert 'asyncio' not in sys.modules and 'sqlite3' not in sys.modules"
    )
    assert loaded["typer"] is True  # help is typer's
    assert loaded["httpx"] is False


def test_full_cli_imports_typer() -> None:
    # The other half of the check above: the same probe does see a real CLI start.
    loaded = _imported("import orascp.cli.root")
    assert loaded["typer"] is True


# -- a real copy ------------------------------------------------------------------------------


def test_layout_to_layout_copy(tmp_path: Path) -> None:
    artifact = sample_image("cli", layers=2, size=2048)
    write_layout(tmp_path / "src", artifact, tag="v1")
    result = orascp(
        "cp", "--from-oci-layout", "src:v1", "--to-oci-layout", "dst:v2,latest", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[-3:] == [
        "Copied [oci-layout] src:v1 => [oci-layout] dst:v2",
        "Tagged latest",
        f"Digest: {artifact.digest}",
    ]
    short = artifact.digest.split(":")[1][:12]
    assert f"Copied  {short} {OCI_MANIFEST}" in lines
    for blob in artifact.blobs:
        title = (blob.annotations or {}).get("org.opencontainers.image.title", blob.media_type)
        assert f"Copied  {blob.digest.split(':')[1][:12]} {title}" in lines
    assert layout_tags(tmp_path / "dst") == {"v2": artifact.digest, "latest": artifact.digest}
    for blob in artifact.all:
        assert layout_blob(tmp_path / "dst", blob.digest) == blob.data
    assert not any(p.startswith("ingest") for p in files_under(tmp_path / "dst"))


def test_layout_copy_by_digest_into_an_untagged_destination(tmp_path: Path) -> None:
    artifact = sample_image("untagged", layers=1, size=512)
    write_layout(tmp_path / "src", artifact, tag="v1")
    result = orascp(
        "cp", "--from-oci-layout", f"src@{artifact.digest}", "--to-oci-layout", "dst", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert f"Digest: {artifact.digest}" in result.stdout.splitlines()
    assert layout_blob(tmp_path / "dst", artifact.digest) == artifact.root.data
    # README: "a destination with neither tag nor digest stores the content untagged (an OCI
    # layout then lists the root in index.json without a name)".
    index = json.loads((tmp_path / "dst" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [artifact.digest]
    assert "annotations" not in index["manifests"][0]


def test_second_copy_reports_exists(tmp_path: Path) -> None:
    artifact = sample_image("again", layers=1, size=512)
    write_layout(tmp_path / "src", artifact, tag="v1")
    args = ("cp", "--from-oci-layout", "src:v1", "--to-oci-layout", "dst:v1")
    assert orascp(*args, cwd=tmp_path).returncode == 0
    result = orascp(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    short = artifact.digest.split(":")[1][:12]
    assert f"Exists  {short} {OCI_MANIFEST}" in result.stdout.splitlines()
    assert not any(line.startswith("Copying") for line in result.stdout.splitlines())


def test_unknown_source_tag_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    write_layout(tmp_path / "src", sample_image("x", layers=1, size=64), tag="v1")
    result = orascp(
        "cp", "--from-oci-layout", "src:nope", "--to-oci-layout", "dst:v1", cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert_one_error_line(result.stderr, "source oci-layout", '"src:nope"', "not found")
    assert not (tmp_path / "dst").exists()


def test_non_layout_destination_directory_is_refused(tmp_path: Path) -> None:
    write_layout(tmp_path / "src", sample_image("x", layers=1, size=64), tag="v1")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep.txt").write_text("mine")
    result = orascp("cp", "--from-oci-layout", "src:v1", "--to-oci-layout", "dst:v1", cwd=tmp_path)
    assert result.returncode == 1
    assert_one_error_line(result.stderr, "non-empty")
    assert files_under(tmp_path / "dst") == ["keep.txt"]

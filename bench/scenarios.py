"""The benchmark scenarios: each times orascp against its peers, alternating them run by run."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from bench.accesslog import AccessLog
from bench.artifacts import OCI_MANIFEST, REF_NAME, TAG, Artifact
from bench.measure import Outcome, run_measured
from bench.tools import CurlFloors, Orascp, clear_skopeo_cache, skopeo_copy
from tests.support.registry import Registry

ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)

Verify = Callable[[], str | None]


@dataclass
class RunRecord:
    """One timed run of one tool, with the requests both registries saw during it."""

    tool: str
    rep: int
    dest: str
    argv: list[str]
    wall: float
    maxrss_kib: int
    returncode: int
    ok: bool
    error: str
    requests: dict[str, dict[str, int]]
    # Per registry: bytes of the blobs that upload PUTs committed (see AccessLog.read).
    uploaded_bytes: dict[str, int] = field(default_factory=dict)


@dataclass
class Series:
    """Every run of one tool in one scenario on one artifact."""

    scenario: str
    title: str
    size: str
    blobs: int
    total_bytes: int
    tool: str
    runs: list[RunRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Contender:
    """A tool taking part in a scenario: its name and how to do one run of it."""

    name: str
    run: Callable[[int], RunRecord]


@dataclass(frozen=True)
class Ref:
    """A destination, as orascp and skopeo spell it, with its check and its clean-up."""

    orascp: str
    skopeo: str
    verify: Verify
    cleanup: Callable[[], None] = lambda: None


class Bench:
    """Hold what every scenario needs: both registries, the tools, a scratch directory."""

    def __init__(
        self,
        registries: dict[str, Registry],
        workdir: Path,
        orascp: Orascp,
        timeout: float,
        blob_sizes: dict[str, int] | None = None,
    ) -> None:
        self.a = registries["A"].host
        self.b = registries["B"].host
        self.logs = {name: AccessLog(reg) for name, reg in registries.items()}
        self.workdir = workdir
        self.orascp = orascp
        self.floors = CurlFloors(workdir, timeout)
        self.timeout = timeout
        # digest -> size of every blob of every artifact, to turn committed uploads into bytes.
        self.blob_sizes = dict(blob_sizes or {})
        self.caches = workdir / "orascp-caches"

    # -- one run --------------------------------------------------------------------------

    def measure(
        self,
        tool: str,
        rep: int,
        dest: str,
        launch: Callable[[], Outcome],
        verify: Verify | None = None,
        *,
        count: bool = True,
    ) -> RunRecord:
        """Time ``launch`` once, count both registries' requests during it, check the result."""
        logs = self.logs if count else {}
        marks = {name: log.mark() for name, log in logs.items()}
        outcome = launch()
        seen = {name: log.read(marks[name]) for name, log in logs.items()}
        requests = {name: s.kinds for name, s in seen.items()}
        # A digest that is not one of the artifacts' blobs cannot happen here; count it as 0.
        uploaded = {
            name: sum(self.blob_sizes.get(d, 0) for d in s.uploaded) for name, s in seen.items()
        }
        error = ""
        if outcome.timed_out:
            error = f"timed out after {self.timeout:.0f}s; {outcome.stderr_tail}"
        elif outcome.returncode != 0:
            error = f"exit {outcome.returncode}: {outcome.stderr_tail}"
        elif verify is not None:
            error = verify() or ""
        return RunRecord(
            tool=tool,
            rep=rep,
            dest=dest,
            argv=outcome.argv,
            wall=outcome.wall,
            maxrss_kib=outcome.maxrss_kib,
            returncode=outcome.returncode,
            ok=not error,
            error=error,
            requests=requests,
            uploaded_bytes=uploaded,
        )

    def run_tool(self, tool: str, rep: int, dest: Ref, argv: list[str]) -> RunRecord:
        """Run one orascp or skopeo command measured, then clean its destination up."""
        try:
            return self.measure(
                tool,
                rep,
                dest.orascp,
                lambda: run_measured(argv, timeout=self.timeout),
                dest.verify,
            )
        finally:
            dest.cleanup()

    # -- orascp's blob-location cache -----------------------------------------------------

    def cache_file(self, name: str) -> Path:
        """Return the path of a blob-location cache file named ``name`` that does not exist yet.

        Everything under ``self.caches`` goes with the work directory; the user's own cache
        (``$XDG_CACHE_HOME/orascp/``) is never read or written by the benchmark.
        """
        directory = self.caches / name
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
        return directory / "blob-locations.sqlite"

    # -- destinations ---------------------------------------------------------------------

    def registry_ref(self, host: str, repo: str, artifact: Artifact) -> Ref:
        """Return a registry destination and a check that its tag names the artifact."""
        return Ref(
            orascp=f"{host}/{repo}:{TAG}",
            skopeo=f"docker://{host}/{repo}:{TAG}",
            verify=lambda: check_registry_tag(host, repo, artifact),
        )

    def layout_ref(self, name: str, artifact: Artifact) -> Ref:
        """Return a fresh layout destination, its check, and a clean-up that deletes it."""
        path = self.workdir / "out" / name
        path.parent.mkdir(exist_ok=True)  # skopeo wants the parent; each tool creates the leaf
        return Ref(
            orascp=f"{path}:{TAG}",
            skopeo=f"oci:{path}:{TAG}",
            verify=lambda: check_layout_tag(path, artifact),
            cleanup=lambda: shutil.rmtree(path, ignore_errors=True),
        )

    # -- alternation ----------------------------------------------------------------------

    def alternate(
        self, scenario: str, title: str, artifact: Artifact, contenders: list[Contender], runs: int
    ) -> list[Series]:
        """Run every contender ``runs`` times on ``artifact``, alternating them."""

        def new_series(tool: str) -> Series:
            return Series(
                scenario, title, artifact.label, len(artifact.blobs), artifact.total_bytes, tool
            )

        return alternate(contenders, runs, new_series)


def alternate(
    contenders: list[Contender], runs: int, new_series: Callable[[str], Series]
) -> list[Series]:
    """Run every contender ``runs`` times, each repetition once each in a rotating order."""
    series = {c.name: new_series(c.name) for c in contenders}
    for rep in range(runs):
        shift = rep % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            record = contender.run(rep)
            series[contender.name].runs.append(record)
            report_progress(series[contender.name], record)
    return list(series.values())


def report_progress(series: Series, record: RunRecord) -> None:
    """Print one line about a finished run on stderr."""
    status = "ok" if record.ok else f"FAILED: {record.error[:200]}"
    print(
        f"  [{series.scenario} {series.size}] {series.tool} run {record.rep}: "
        f"{record.wall:.3f}s {status}",
        file=sys.stderr,
        flush=True,
    )


def dest_name(scenario: str, artifact: Artifact, tool: str, rep: int) -> str:
    """Return a repository or directory name used by exactly one run."""
    return f"dst-{scenario}-{artifact.label}-{tool}-{rep}".lower()


def check_registry_tag(host: str, repo: str, artifact: Artifact) -> str | None:
    """Return why ``host/repo:TAG`` does not name the artifact's manifest, or None if it does."""
    url = f"http://{host}/v2/{repo}/manifests/{TAG}"
    try:
        response = httpx.head(url, headers={"Accept": ACCEPT}, timeout=30.0)
    except httpx.HTTPError as exc:
        return f"verify: HEAD {url}: {exc}"
    if response.status_code != 200:
        return f"verify: HEAD {url}: HTTP {response.status_code}"
    got = response.headers.get("Docker-Content-Digest")
    if got != artifact.manifest_digest:
        return f"verify: {url} is {got}, expected {artifact.manifest_digest} (content rewritten?)"
    return None


def check_layout_tag(path: Path, artifact: Artifact) -> str | None:
    """Return why the layout at ``path`` lacks the artifact under TAG, or None if it has it."""
    try:
        index = json.loads((path / "index.json").read_text())
    except (OSError, ValueError) as exc:
        return f"verify: {path}/index.json: {exc}"
    digests = [
        m.get("digest")
        for m in index.get("manifests", [])
        if m.get("annotations", {}).get(REF_NAME) == TAG
    ]
    if digests != [artifact.manifest_digest]:
        return f"verify: {path} tag {TAG} is {digests}, expected {artifact.manifest_digest}"
    for blob in artifact.blobs:
        stored = path / "blobs" / "sha256" / blob.digest.removeprefix("sha256:")
        if not stored.is_file() or stored.stat().st_size != blob.size:
            return f"verify: {path} lacks {blob.digest} ({blob.size} bytes)"
    return None


# -- contenders --------------------------------------------------------------------------------

DestOf = Callable[[str], Ref]


# How an orascp contender's runs see the blob-location cache: "fresh" gives every run an empty
# cache file of its own (deleted after the run), "off" passes --no-blob-cache, and a path makes
# every run share that file.
CachePolicy = Path | Literal["fresh", "off"]


def orascp_contender(
    bench: Bench,
    scenario: str,
    artifact: Artifact,
    src: str,
    dest_of: DestOf,
    *,
    name: str = "orascp",
    cache: CachePolicy = "fresh",
    from_layout: bool = False,
    to_layout: bool = False,
) -> Contender:
    """Return orascp copying ``src`` into a fresh destination per run.

    The scenarios 1 to 5 use ``cache="fresh"``: orascp runs as shipped (the cache on, so its
    cost -- importing sqlite3, creating the file, recording every blob -- is in the timings,
    as skopeo pays for creating its own cache in the cold runs), but knowing nothing, so it
    cannot mount from an earlier run's destination. ``--no-blob-cache`` would leave that cost
    out and flatter orascp; one cache shared by the runs would turn every run after the first
    into mounts from the previous run's repository, and measure nothing.
    """

    def run(rep: int) -> RunRecord:
        where = dest_name(scenario, artifact, name, rep)
        dest = dest_of(where)
        blob_cache = (
            None if cache == "off" else bench.cache_file(where) if cache == "fresh" else cache
        )
        argv = bench.orascp.cp(
            src, dest.orascp, blob_cache=blob_cache, from_layout=from_layout, to_layout=to_layout
        )
        try:
            return bench.run_tool(name, rep, dest, argv)
        finally:
            if cache == "fresh" and blob_cache is not None:
                shutil.rmtree(blob_cache.parent, ignore_errors=True)

    return Contender(name, run)


def skopeo_contender(
    bench: Bench,
    scenario: str,
    artifact: Artifact,
    src: str,
    dest_of: DestOf,
    *,
    name: str = "skopeo",
    cold: bool = True,
) -> Contender:
    """Return skopeo copying ``src`` into a fresh destination per run, its cache cold if asked."""

    def run(rep: int) -> RunRecord:
        dest = dest_of(dest_name(scenario, artifact, name, rep))
        if cold:
            clear_skopeo_cache()
        return bench.run_tool(name, rep, dest, skopeo_copy(src, dest.skopeo))

    return Contender(name, run)


def floor_contender(
    bench: Bench, scenario: str, artifact: Artifact, name: str, launch: Callable[[str], Outcome]
) -> Contender:
    """Return a curl floor; ``launch`` gets the run's fresh destination name."""

    def run(rep: int) -> RunRecord:
        dest = dest_name(scenario, artifact, name, rep)
        return bench.measure(name, rep, dest, lambda: launch(dest))

    return Contender(name, run)


# -- scenarios ---------------------------------------------------------------------------------


def same_registry_cold(bench: Bench, artifact: Artifact, runs: int) -> list[Series]:
    """Scenario 1 (cold): A/src -> A/dst; skopeo's blob-info cache deleted before each run."""
    src = f"{bench.a}/{artifact.repo}:{TAG}"

    def to_a(name: str) -> Ref:
        return bench.registry_ref(bench.a, name, artifact)

    def mount(dest: str) -> Outcome:
        return bench.floors.mount(bench.a, artifact.repo, dest, artifact)

    contenders = [
        orascp_contender(bench, "1-cold", artifact, src, to_a),
        skopeo_contender(bench, "1-cold", artifact, f"docker://{src}", to_a, name="skopeo-cold"),
        floor_contender(bench, "1-cold", artifact, "curl-mount", mount),
    ]
    return bench.alternate(
        "1-cold", "A/src -> A/dst (skopeo cache cold)", artifact, contenders, runs
    )


def same_registry_warm(bench: Bench, artifact: Artifact, runs: int) -> list[Series]:
    """Scenario 1 (warm): A/src -> A/dst; skopeo's cache primed by one copy, never deleted."""
    src = f"{bench.a}/{artifact.repo}:{TAG}"

    def to_a(name: str) -> Ref:
        return bench.registry_ref(bench.a, name, artifact)

    clear_skopeo_cache()
    prime_dest = to_a(dest_name("1-warm", artifact, "prime", 0))
    prime = bench.run_tool(
        "prime", 0, prime_dest, skopeo_copy(f"docker://{src}", prime_dest.skopeo)
    )
    contenders = [
        orascp_contender(bench, "1-warm", artifact, src, to_a),
        skopeo_contender(
            bench, "1-warm", artifact, f"docker://{src}", to_a, name="skopeo-warm", cold=False
        ),
    ]
    series = bench.alternate(
        "1-warm", "A/src -> A/dst (skopeo cache warm)", artifact, contenders, runs
    )
    series[1].notes.append(
        f"primed by one skopeo copy in {prime.wall:.2f}s ({prime.error or 'ok'})"
    )
    return series


def cross_registry(bench: Bench, artifact: Artifact, runs: int) -> list[Series]:
    """Scenario 2: registry A -> registry B."""
    src = f"{bench.a}/{artifact.repo}:{TAG}"

    def to_b(name: str) -> Ref:
        return bench.registry_ref(bench.b, name, artifact)

    def upload(dest: str) -> Outcome:
        return bench.floors.upload(bench.b, dest, artifact)

    contenders = [
        orascp_contender(bench, "2", artifact, src, to_b),
        skopeo_contender(bench, "2", artifact, f"docker://{src}", to_b),
        floor_contender(bench, "2", artifact, "curl-put", upload),
    ]
    return bench.alternate("2", "registry A -> registry B", artifact, contenders, runs)


def to_layout(bench: Bench, artifact: Artifact, runs: int) -> list[Series]:
    """Scenario 3: registry A -> a fresh OCI layout directory."""
    src = f"{bench.a}/{artifact.repo}:{TAG}"

    def to_dir(name: str) -> Ref:
        return bench.layout_ref(name, artifact)

    def download(_dest: str) -> Outcome:
        return bench.floors.download(bench.a, artifact.repo, artifact)

    contenders = [
        orascp_contender(bench, "3", artifact, src, to_dir, to_layout=True),
        skopeo_contender(bench, "3", artifact, f"docker://{src}", to_dir),
        floor_contender(bench, "3", artifact, "curl-get", download),
    ]
    return bench.alternate("3", "registry A -> OCI layout", artifact, contenders, runs)


def from_layout(bench: Bench, artifact: Artifact, runs: int) -> list[Series]:
    """Scenario 4: the artifact's OCI layout -> registry B."""

    def to_b(name: str) -> Ref:
        return bench.registry_ref(bench.b, name, artifact)

    def upload(dest: str) -> Outcome:
        return bench.floors.upload(bench.b, dest, artifact)

    src = f"{artifact.layout}:{TAG}"
    contenders = [
        orascp_contender(bench, "4", artifact, src, to_b, from_layout=True),
        skopeo_contender(bench, "4", artifact, f"oci:{src}", to_b),
        floor_contender(bench, "4", artifact, "curl-put", upload),
    ]
    return bench.alternate("4", "OCI layout -> registry B", artifact, contenders, runs)


def small_blobs(bench: Bench, artifact: Artifact, runs: int) -> list[Series]:
    """Scenario 5: the many-small-blobs artifact, registry A -> registry B."""
    src = f"{bench.a}/{artifact.repo}:{TAG}"

    def to_b(name: str) -> Ref:
        return bench.registry_ref(bench.b, name, artifact)

    contenders = [
        orascp_contender(bench, "5", artifact, src, to_b),
        skopeo_contender(bench, "5", artifact, f"docker://{src}", to_b),
    ]
    return bench.alternate("5", "many small blobs, A -> B", artifact, contenders, runs)


def startup(bench: Bench, python: str, runs: int) -> list[Series]:
    """Scenario 6: ``orascp --version`` and ``cp --help`` against ``python -c pass``."""
    commands = {
        "orascp --version": [*bench.orascp.command, "--version"],
        # --help builds the whole typer app (every flag of cp) but must not import httpx or rich.
        "orascp --help": [*bench.orascp.command, "cp", "--help"],
        "python -c pass": [python, "-c", "pass"],
    }

    def contender(name: str, argv: list[str]) -> Contender:
        def run(rep: int) -> RunRecord:
            return bench.measure(
                name, rep, "-", lambda: run_measured(argv, timeout=60.0), count=False
            )

        return Contender(name, run)

    contenders = [contender(name, argv) for name, argv in commands.items()]
    return alternate(contenders, runs, lambda tool: Series("6", "start-up", "-", 0, 0, tool))


def layers_elsewhere(bench: Bench, artifact: Artifact, runs: int) -> list[Series]:
    """Scenario 7: A/src -> B/dst while B already holds the layers in another repository.

    Before the timed runs, each tool copies A/src into a seed repository of B of its own, and so
    learns where the blobs are by uploading them, as its cache is meant to learn:

    - skopeo into B/seed-...-skopeo, its blob-info cache cleared just before: it records each
      blob's location and compression. It must upload them itself: a blob it only finds by a
      HEAD is recorded without its compression, and skopeo 1.9 offers no such blob for a mount;
    - orascp into B/seed-...-orascp with this scenario's cache file. It must have a repository
      of its own too: against a tag that already names the manifest it stops there and
      records nothing. The cache is then checked to list that repository for every blob.

    The timed runs copy into a fresh B repository each: orascp with that cache file, orascp
    ``--no-blob-cache`` (uploads everything, as in scenario 2) and skopeo, its cache never
    cleared during the scenario (warm). Both caches also learn each timed run's destination;
    every one of them holds the same blobs, so that changes nothing of what can be mounted.
    """
    src = f"{bench.a}/{artifact.repo}:{TAG}"

    def to_b(name: str) -> Ref:
        return bench.registry_ref(bench.b, name, artifact)

    def seed(tool: str, argv_of: Callable[[Ref], list[str]]) -> tuple[str, RunRecord]:
        repo = f"seed-7-{artifact.label}-{tool}".lower()
        dest = to_b(repo)
        return repo, bench.run_tool(f"seed-{tool}", 0, dest, argv_of(dest))

    clear_skopeo_cache()
    skopeo_repo, skopeo_seed = seed(
        "skopeo", lambda dest: skopeo_copy(f"docker://{src}", dest.skopeo)
    )
    cache = bench.cache_file(f"seed-7-{artifact.label}".lower())
    orascp_repo, orascp_seed = seed(
        "orascp", lambda dest: bench.orascp.cp(src, dest.orascp, blob_cache=cache)
    )
    known = cache_knows(cache, bench.b, orascp_repo, artifact)
    contenders = [
        orascp_contender(bench, "7", artifact, src, to_b, name="orascp-cache", cache=cache),
        orascp_contender(bench, "7", artifact, src, to_b, name="orascp-no-cache", cache="off"),
        skopeo_contender(
            bench, "7", artifact, f"docker://{src}", to_b, name="skopeo-warm", cold=False
        ),
    ]
    series = bench.alternate(
        "7", "A/src -> B/dst, layers already in B/seed-* (caches warm)", artifact, contenders, runs
    )
    series[0].notes.append(
        f"cache seeded by orascp A/src -> B/{orascp_repo} in {orascp_seed.wall:.2f}s "
        f"({orascp_seed.error or 'ok'}, {orascp_seed.uploaded_bytes.get('B', 0):,} bytes "
        f"uploaded); it then listed B/{orascp_repo} for {known}"
    )
    series[2].notes.append(
        f"cache cleared, then warmed by skopeo A/src -> B/{skopeo_repo} in "
        f"{skopeo_seed.wall:.2f}s ({skopeo_seed.error or 'ok'}, "
        f"{skopeo_seed.uploaded_bytes.get('B', 0):,} bytes uploaded)"
    )
    return series


def cache_knows(path: Path, registry: str, repository: str, artifact: Artifact) -> str:
    """Return for how many of the artifact's blobs orascp's cache lists ``repository``."""
    from orascp.blobcache import BlobCache  # the check reads the file through orascp's own API

    with BlobCache(path) as cache:
        hits = sum(
            repository in cache.candidates(registry, blob.digest, limit=100)
            for blob in artifact.blobs
        )
        broken = f" (cache disabled: {cache.disabled})" if cache.disabled else ""
    return f"{hits}/{len(artifact.blobs)} blobs{broken}"

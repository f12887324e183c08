"""Set the benchmark up, run the scenarios asked for, print the table and write the JSON."""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.artifacts import MIB, Artifact, ArtifactSpec, build_artifact, push_artifact
from bench.scenarios import (
    Bench,
    Series,
    cross_registry,
    from_layout,
    layers_elsewhere,
    same_registry_cold,
    same_registry_warm,
    small_blobs,
    startup,
    to_layout,
)
from bench.tools import (
    SKOPEO,
    Orascp,
    SkopeoCacheGuard,
    find_orascp,
    first_line,
    interpreter_of,
)
from tests.support.registry import REGISTRY_BINARY, Registry

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "latest.json"

SIZES = {
    "1MiB": ArtifactSpec("1MiB", 4, MIB // 4),
    "100MiB": ArtifactSpec("100MiB", 5, 20 * MIB),
    "1GiB": ArtifactSpec("1GiB", 8, 128 * MIB),
}
QUICK_SIZES = ["1MiB", "100MiB"]
# 500 layers of 4 KiB each: 2560 random bytes in a tar (+512 header, +1024 end) in stored gzip.
SMALL = ArtifactSpec("500x4KiB", 500, 4 * 1024 - 1536)
SCENARIOS = ["1", "2", "3", "4", "5", "6", "7"]
# Runs per series: --runs wins; else 3 in --quick, 5 otherwise, and 3 for 1 GiB.
QUICK_RUNS, FULL_RUNS, LARGE_RUNS = 3, 5, 3
STARTUP_RUNS_QUICK, STARTUP_RUNS_FULL = 10, 20

SizedScenario = Callable[[Bench, Artifact, int], list[Series]]
SIZED: dict[str, list[SizedScenario]] = {
    "1": [same_registry_cold, same_registry_warm],
    "2": [cross_registry],
    "3": [to_layout],
    "4": [from_layout],
    "7": [layers_elsewhere],
}


def size_name(text: str) -> str:
    """Return the canonical size name for ``text`` (case-insensitive), for argparse."""
    for name in SIZES:
        if name.lower() == text.lower():
            return name
    raise argparse.ArgumentTypeError(f"unknown size {text!r}; choose from {', '.join(SIZES)}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Time orascp against skopeo and curl floors on two local docker-registry "
        "processes.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="1 MiB and 100 MiB only, 3 runs each (< 5 min)"
    )
    parser.add_argument(
        "--sizes", nargs="+", type=size_name, metavar="SIZE", help=f"of {', '.join(SIZES)}"
    )
    parser.add_argument("--runs", type=int, metavar="N", help="runs per tool and scenario")
    parser.add_argument(
        "--scenarios", nargs="+", choices=SCENARIOS, default=SCENARIOS, metavar="K",
        help="scenarios to run: 1 same registry, 2 A->B, 3 ->layout, 4 layout->, 5 small "
        "blobs, 6 start-up, 7 A->B with the layers already in B (default: all)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH")
    parser.add_argument("--concurrency", type=int, metavar="N", help="pass to orascp")
    parser.add_argument(
        "--timeout", type=float, default=900.0, metavar="S", help="per run (default 900)"
    )
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def missing_prerequisites() -> dict[str, str]:
    """Return the Debian package and a line about it for each missing program needed."""
    programs = {
        "skopeo": (SKOPEO, "the peer orascp is compared with"),
        "docker-registry": (REGISTRY_BINARY, "the registries the copies run against"),
        "curl": ("curl", "the floors"),
        "findutils": ("xargs", "runs the curl floors in parallel"),
    }
    return {
        package: f"{program} is missing ({why})."
        for package, (program, why) in programs.items()
        if shutil.which(program) is None
    }


def runs_for(args: argparse.Namespace, size: str) -> int:
    """Return how many runs each tool gets on an artifact of ``size``."""
    if args.runs is not None:
        return int(args.runs)
    if args.quick:
        return QUICK_RUNS
    return LARGE_RUNS if size == "1GiB" else FULL_RUNS


def startup_runs(args: argparse.Namespace) -> int:
    """Return how many runs each start-up command gets (10 at least)."""
    if args.runs is not None:
        return max(10, int(args.runs))
    return STARTUP_RUNS_QUICK if args.quick else STARTUP_RUNS_FULL


def say(text: str) -> None:
    """Print a progress line on stderr."""
    print(text, file=sys.stderr, flush=True)


def prepare(specs: list[ArtifactSpec], root: Path, host: str) -> list[Artifact]:
    """Build each artifact's layout on disk and push it to the registry at ``host``."""
    artifacts = []
    for spec in specs:
        started = time.perf_counter()
        artifact = build_artifact(spec, root)
        built = time.perf_counter()
        push_artifact(artifact, host)
        say(
            f"artifact {spec.label}: {len(artifact.blobs)} blobs, {artifact.total_bytes} bytes, "
            f"built in {built - started:.1f}s, pushed in {time.perf_counter() - built:.1f}s"
        )
        artifacts.append(artifact)
    return artifacts


def run_scenarios(
    bench: Bench, args: argparse.Namespace, sized: list[Artifact], small: Artifact | None
) -> list[Series]:
    """Run the scenarios asked for, scenario by scenario, every size within each."""
    results: list[Series] = []
    for key in args.scenarios:
        for scenario in SIZED.get(key, []):
            for artifact in sized:
                results.extend(scenario(bench, artifact, runs_for(args, artifact.label)))
        if key == "5" and small is not None:
            results.extend(small_blobs(bench, small, runs_for(args, small.label)))
        if key == "6":
            python = interpreter_of(list(bench.orascp.command))
            results.extend(startup(bench, python, startup_runs(args)))
    return results


def describe_artifacts(artifacts: list[Artifact]) -> list[dict[str, Any]]:
    """Return what each artifact holds, for the JSON file."""
    return [
        {
            "label": a.label,
            "repo": a.repo,
            "blobs": len(a.blobs),
            "layers": len(a.layers),
            "total_bytes": a.total_bytes,
            "manifest_digest": a.manifest_digest,
            "layer_sizes": [b.size for b in a.layers],
        }
        for a in artifacts
    ]


def print_report(results: list[Series], artifacts: list[Artifact], elapsed: float) -> None:
    """Print the table, the start-up difference and what looks odd in orascp's requests."""
    print()
    print(report.titles(results))
    print()
    print(report.artifact_lines(artifacts))
    print()
    print(report.render_table(results))
    cached = report.location_lines(results)
    if cached:
        print("\nlayers already in B (scenario 7, medians):")
        print("\n".join(f"  {line}" for line in cached))
    for tool in ("orascp --version", "orascp --help"):
        difference = report.startup_difference(results, tool)
        if difference is not None:
            print(f"start-up: {tool} - python -c pass = {difference:+.3f}s (medians)")
    odd = [line for series in results for line in report.odd_requests(series)]
    if odd:
        print("\norascp request counts that look wrong:")
        print("\n".join(f"  {line}" for line in odd))
    print(f"\ntotal benchmark time {elapsed:.0f}s")


def benchmark(
    args: argparse.Namespace, workdir: Path, orascp: Orascp
) -> tuple[list[Series], list[Artifact]]:
    """Start both registries, prepare the artifacts, run the scenarios; return the results."""
    sizes = args.sizes or (QUICK_SIZES if args.quick else list(SIZES))
    registries = {name: Registry(workdir, name=name) for name in ("A", "B")}
    try:
        for registry in registries.values():
            registry.start()
        say(f"registries: A={registries['A'].host} B={registries['B'].host}; workdir {workdir}")
        needs_sized = any(k in SIZED for k in args.scenarios)
        sized = prepare(
            [SIZES[s] for s in sizes] if needs_sized else [], workdir, registries["A"].host
        )
        small = (
            prepare([SMALL], workdir, registries["A"].host)[0] if "5" in args.scenarios else None
        )
        artifacts = [*sized, *([small] if small else [])]
        sizes_of = {b.digest: b.size for a in artifacts for b in a.blobs}
        bench = Bench(registries, workdir, orascp, args.timeout, sizes_of)
        results = run_scenarios(bench, args, sized, small)
    finally:
        for registry in registries.values():
            registry.stop()
    return results, artifacts


def main(argv: list[str]) -> int:
    """Run the benchmark and return the process exit code."""
    args = parse_args(argv)
    missing = missing_prerequisites()
    if missing:
        print("\n".join(missing.values()), file=sys.stderr)
        print(
            "Run `bash .ci/run bench` (installs what the benchmark needs, then runs it) or "
            f"`apt-get install {' '.join(missing)}`.",
            file=sys.stderr,
        )
        return 2
    # A user's orascp runs from bytecode (pip compiles it on install); with this variable set
    # (some sandboxes and CI images set it) every run would compile orascp's modules again,
    # about 30 ms that no user pays.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run(
        [interpreter_of(find_orascp()), "-m", "compileall", "-q", str(REPO_ROOT / "orascp")],
        check=False,
    )
    started = time.perf_counter()
    extra = ("--concurrency", str(args.concurrency)) if args.concurrency is not None else ()
    orascp = Orascp(tuple(find_orascp()), extra)
    machine = report.machine(interpreter_of(list(orascp.command)), REPO_ROOT)
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    workdir = Path(tempfile.mkdtemp(prefix="orascp-bench-"))
    try:
        with SkopeoCacheGuard(workdir / "skopeo-cache-stash"):
            results, artifacts = benchmark(args, workdir, orascp)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    machine["loadavg_after"] = report.loadavg()
    print_report(results, artifacts, elapsed)
    document = {
        "date": date,
        "duration_s": round(elapsed, 1),
        "argv": argv,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine,
        "orascp_command": [*orascp.command, *orascp.extra],
        "orascp_version": first_line([*orascp.command, "--version"]),
        "artifacts": describe_artifacts(artifacts),
    }
    report.write_json(args.json, document, results)
    print(f"raw measurements: {args.json}")
    failed = any(not run.ok for series in results for run in series.runs)
    return 1 if failed else 0

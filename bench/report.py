"""Summarise the runs: statistics, the table on stdout, odd request counts, the JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.artifacts import Artifact
from bench.scenarios import RunRecord, Series
from bench.tools import SKOPEO, first_line

SHORT_KIND = {
    "ping GET": "ping",
    "blob HEAD": "bHEAD",
    "blob GET": "bGET",
    "upload POST": "POST",
    "upload PATCH": "PATCH",
    "upload PUT": "PUT",
    "mount POST 201": "mnt201",
    "mount POST 202": "mnt202",
    "manifest HEAD": "mHEAD",
    "manifest GET": "mGET",
    "manifest PUT": "mPUT",
}
LEGEND = (
    "requests (A+B, from the median run): ping = GET /v2/, bHEAD/bGET = blob HEAD/GET, "
    "POST/PATCH/PUT = upload session, mnt201/mnt202 = mount POST answered 201/202, "
    "mHEAD/mGET/mPUT = manifest"
)
PEERS_OF_ORASCP = "orascp"
# The rows the others are divided by in ora/peer: orascp, but in scenario 7 orascp with its cache.
CACHED = "orascp-cache"
NO_CACHE = "orascp-no-cache"
WARM_PEER = "skopeo-warm"
LOCATIONS_SCENARIO = "7"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Summary:
    """The statistics of one series over its successful runs."""

    ok_runs: int
    runs: int
    median: float | None
    minimum: float | None
    maximum: float | None
    maxrss_mib: float | None
    requests: dict[str, int]
    requests_per_blob: float | None
    # Bytes committed by upload PUTs in the median run, A+B, and B alone.
    uploaded_bytes: int | None
    uploaded_bytes_b: int | None


def total_requests(run: RunRecord) -> Counter[str]:
    """Return a run's requests summed over both registries, by kind."""
    total: Counter[str] = Counter()
    for per_registry in run.requests.values():
        total.update(per_registry)
    return total


def median_run(runs: list[RunRecord]) -> RunRecord | None:
    """Return the successful run with the median wall time (the lower one of an even count)."""
    ok = sorted((r for r in runs if r.ok), key=lambda r: r.wall)
    return ok[(len(ok) - 1) // 2] if ok else None


def summarise(series: Series) -> Summary:
    """Return the median, min and max wall time, peak RSS and request counts of ``series``."""
    ok = [r for r in series.runs if r.ok]
    middle = median_run(series.runs)
    walls = [r.wall for r in ok]
    rss = [r.maxrss_kib for r in ok if r.maxrss_kib > 0]
    requests = dict(sorted(total_requests(middle).items())) if middle else {}
    counted = sum(n for kind, n in requests.items() if kind != "ping GET")
    return Summary(
        ok_runs=len(ok),
        runs=len(series.runs),
        median=statistics.median(walls) if walls else None,
        minimum=min(walls) if walls else None,
        maximum=max(walls) if walls else None,
        maxrss_mib=max(rss) / 1024 if rss else None,
        requests=requests,
        requests_per_blob=counted / series.blobs if series.blobs and middle else None,
        uploaded_bytes=sum(middle.uploaded_bytes.values()) if middle else None,
        uploaded_bytes_b=middle.uploaded_bytes.get("B", 0) if middle else None,
    )


def reference_tool(group: list[Series]) -> str:
    """Return the tool the others of ``group`` are compared with: orascp, or orascp-cache."""
    return CACHED if any(s.tool == CACHED for s in group) else PEERS_OF_ORASCP


def ratio_to_orascp(group: list[Series], series: Series) -> float | None:
    """Return the reference orascp's median over ``series``' median, same scenario and size."""
    reference = reference_tool(group)
    if series.tool == reference:
        return None
    orascp = next((s for s in group if s.tool == reference), None)
    if orascp is None:
        return None
    mine, theirs = summarise(orascp).median, summarise(series).median
    return mine / theirs if mine and theirs else None


def _fmt(value: float | None, spec: str = ".3f") -> str:
    """Format a number, or ``-`` when there is none."""
    return "-" if value is None else format(value, spec)


def format_requests(requests: dict[str, int]) -> str:
    """Return request counts as short ``kind=count`` words."""
    return " ".join(f"{SHORT_KIND.get(k, k)}={n}" for k, n in requests.items())


def _groups(all_series: list[Series]) -> list[list[Series]]:
    """Group series by (scenario, size), keeping their order."""
    groups: dict[tuple[str, str], list[Series]] = {}
    for series in all_series:
        groups.setdefault((series.scenario, series.size), []).append(series)
    return list(groups.values())


HEADER = (
    f"{'scenario':<8} {'size':<9} {'tool':<16} {'ok':>10} {'median s':>9} {'min s':>8} "
    f"{'max s':>8} {'ora/peer':>8} {'RSS MiB':>8} {'up MiB':>8} {'req/blob':>8}  requests"
)


def table_row(group: list[Series], series: Series) -> str:
    """Return one line of the table."""
    s = summarise(series)
    status = (
        f"{s.ok_runs}/{s.runs}" if s.ok_runs == s.runs else f"FAILED {s.runs - s.ok_runs}/{s.runs}"
    )
    return (
        f"{series.scenario:<8} {series.size:<9} {series.tool:<16} {status:>10} "
        f"{_fmt(s.median):>9} {_fmt(s.minimum):>8} {_fmt(s.maximum):>8} "
        f"{_fmt(ratio_to_orascp(group, series), '.2f'):>8} {_fmt(s.maxrss_mib, '.1f'):>8} "
        f"{_fmt(_mib(s.uploaded_bytes), '.2f'):>8} "
        f"{_fmt(s.requests_per_blob, '.2f'):>8}  {format_requests(s.requests)}"
    )


def render_table(all_series: list[Series]) -> str:
    """Return the whole table, a blank line between scenarios, failures and notes after it."""
    lines = [HEADER, "-" * len(HEADER)]
    previous = None
    for group in _groups(all_series):
        if previous is not None and group[0].scenario != previous:
            lines.append("")
        previous = group[0].scenario
        lines.extend(table_row(group, series) for series in group)
    lines.extend(
        [
            "",
            LEGEND,
            "ora/peer = orascp median / that row's median (< 1: orascp faster); in scenario 7 "
            f"the {CACHED} median",
            "up MiB = bytes the median run uploaded (upload PUTs committed, A+B, from the access "
            "logs and the blobs' sizes)",
        ]
    )
    for series in all_series:
        for run in series.runs:
            if not run.ok:
                where = f"{series.scenario} {series.size} {series.tool} run {run.rep}"
                lines.append(f"FAILED {where}: {run.error}")
        lines.extend(
            f"note {series.scenario} {series.size} {series.tool}: {n}" for n in series.notes
        )
    return "\n".join(lines)


def _mib(value: int | None) -> float | None:
    """Return bytes as MiB, or None."""
    return None if value is None else value / MIB


def location_ratios(all_series: list[Series]) -> list[dict[str, Any]]:
    """Return scenario 7's comparisons per size: orascp-cache against skopeo and no cache.

    Each holds the medians (seconds) and the bytes uploaded to B by the median runs, and the
    time ratios ``orascp-cache/skopeo-warm`` and ``orascp-cache/orascp-no-cache``.
    """
    out = []
    for group in _groups([s for s in all_series if s.scenario == LOCATIONS_SCENARIO]):
        summaries = {s.tool: summarise(s) for s in group}
        entry: dict[str, Any] = {"size": group[0].size}
        for tool, summary in summaries.items():
            entry[tool] = {"median_s": summary.median, "uploaded_bytes_b": summary.uploaded_bytes_b}
        cached = summaries.get(CACHED)
        mine = cached.median if cached else None
        for peer in (WARM_PEER, NO_CACHE):
            other = summaries.get(peer)
            theirs = other.median if other else None
            entry[f"{CACHED}/{peer}"] = mine / theirs if mine and theirs else None
        out.append(entry)
    return out


def location_lines(all_series: list[Series]) -> list[str]:
    """Return one line per size of scenario 7: time ratios and bytes uploaded to B."""
    lines = []
    for entry in location_ratios(all_series):
        sent = ", ".join(
            f"{tool} {_fmt(entry[tool]['uploaded_bytes_b'], ',')}"
            for tool in (CACHED, NO_CACHE, WARM_PEER)
            if tool in entry
        )
        lines.append(
            f"7 {entry['size']}: time {CACHED}/{WARM_PEER} = "
            f"{_fmt(entry[f'{CACHED}/{WARM_PEER}'], '.2f')}, {CACHED}/{NO_CACHE} = "
            f"{_fmt(entry[f'{CACHED}/{NO_CACHE}'], '.2f')}; bytes uploaded to B: {sent}"
        )
    return lines


def titles(all_series: list[Series]) -> str:
    """Return one line per scenario saying what it copies."""
    seen: dict[str, str] = {}
    for series in all_series:
        seen.setdefault(series.scenario, series.title)
    return "\n".join(f"  {key:<7} {title}" for key, title in seen.items())


def artifact_lines(artifacts: list[Artifact]) -> str:
    """Return one line per artifact: its blobs and bytes."""
    return "\n".join(
        f"  {a.label:<9} {len(a.layers)} layers + config, {a.total_bytes:,} bytes, {a.repo}:{a.tag}"
        for a in artifacts
    )


def startup_difference(all_series: list[Series], tool: str = "orascp --version") -> float | None:
    """Return median(``tool``) - median(python -c pass), in seconds."""
    medians = {s.tool: summarise(s).median for s in all_series if s.scenario == "6"}
    orascp, python = medians.get(tool), medians.get("python -c pass")
    return orascp - python if orascp is not None and python is not None else None


# -- what orascp should have sent -------------------------------------------------------------


def expected_orascp(scenario: str, blobs: int, tool: str = PEERS_OF_ORASCP) -> dict[str, int]:
    """Return the request counts (A+B) one orascp copy needs, for the kinds that matter."""
    if scenario.startswith("1-") or tool == CACHED:
        return {"mount POST 201": blobs, "mount POST 202": 0, "blob GET": 0, "upload PUT": 0}
    if scenario == "3":
        return {"blob GET": blobs, "upload POST": 0, "upload PUT": 0}
    if scenario == "4":
        return {"blob GET": 0, "upload PUT": blobs, "mount POST 202": 0, "manifest PUT": 1}
    return {"blob GET": blobs, "upload PUT": blobs, "mount POST 202": 0, "manifest PUT": 1}


def odd_requests(series: Series) -> list[str]:
    """Return what looks wrong in orascp's request counts, run by run."""
    if series.tool not in (PEERS_OF_ORASCP, CACHED, NO_CACHE) or series.scenario == "6":
        return []
    odd = []
    want = expected_orascp(series.scenario, series.blobs, series.tool)
    for run in (r for r in series.runs if r.ok):
        got = total_requests(run)
        wrong = [
            f"{k}={got.get(k, 0)} (expected {n})" for k, n in want.items() if got.get(k, 0) != n
        ]
        if got.get("blob HEAD", 0) > series.blobs:
            wrong.append(f"blob HEAD={got['blob HEAD']} for {series.blobs} blobs")
        if got.get("manifest GET", 0) > 1:
            wrong.append(f"manifest GET={got['manifest GET']} (the source needs one)")
        if wrong:
            where = f"{series.scenario} {series.size} {series.tool} run {run.rep}"
            odd.append(f"{where}: " + ", ".join(wrong))
    return odd


# -- machine and JSON ---------------------------------------------------------------------------


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> str:
    """Return the 1, 5 and 15 minute load averages (others may share the CPU)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def mem_total() -> str:
    """Return MemTotal from /proc/meminfo."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine(orascp_python: str, repo_root: Path) -> dict[str, Any]:
    """Describe the machine and the software measured."""
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "mem_total": mem_total(),
        "loadavg_before": loadavg(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python_harness": sys.version,
        "python_orascp": first_line([orascp_python, "-c", "import sys; print(sys.version)"]),
        "skopeo": first_line([SKOPEO, "--version"]),
        "docker_registry": first_line(["docker-registry", "--version"]),
        "curl": first_line(["curl", "--version"]),
        "orascp_commit": first_line(["git", "-C", str(repo_root), "rev-parse", "HEAD"]),
        "orascp_dirty": bool(
            subprocess.run(
                ["git", "-C", str(repo_root), "status", "--porcelain", "--", "orascp"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        ),
    }


def series_json(group: list[Series], series: Series) -> dict[str, Any]:
    """Return a series with every raw run and its summary, ready for JSON."""
    out = asdict(series)
    out["summary"] = asdict(summarise(series))
    out["summary"]["ratio_orascp_over_this"] = ratio_to_orascp(group, series)
    out["summary"]["ratio_reference"] = reference_tool(group)
    return out


def write_json(path: Path, document: dict[str, Any], all_series: list[Series]) -> None:
    """Write the document with every series (raw runs and summaries) to ``path``."""
    document["series"] = [series_json(g, s) for g in _groups(all_series) for s in g]
    document["startup_difference_s"] = startup_difference(all_series)
    document["startup_help_difference_s"] = startup_difference(all_series, "orascp --help")
    document["blob_cache_ratios"] = location_ratios(all_series)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")

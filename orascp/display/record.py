"""Record what a copy did to each node, for ``--format json`` and for the summary.

The record mirrors the status lines: one entry per node the copy reported, with the action taken
and the bytes that crossed the wire for it. The document it renders is a stable, versioned schema
(``SCHEMA_VERSION``), described in the README; add fields, never rename or remove them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from orascp.descriptor import Descriptor
from orascp.display.text import FirstNames, _Quiet

__all__ = [
    "SCHEMA_VERSION",
    "NodeRecord",
    "Recorder",
    "plan_document",
    "result_document",
    "tags_document",
]

SCHEMA_VERSION = 1

Action = Literal["copied", "mounted", "exists", "skipped"]


@dataclass(slots=True)
class NodeRecord:
    """Say what happened to one node: the action and the bytes moved for it."""

    desc: Descriptor
    action: Action
    bytes: int

    def to_json(self) -> dict[str, Any]:
        """Return the node as it appears in the JSON document."""
        node: dict[str, Any] = {
            "digest": self.desc.digest,
            "mediaType": self.desc.media_type,
            "size": self.desc.size,
            "action": self.action,
            "bytes": self.bytes,
        }
        if self.desc.title:
            node["title"] = self.desc.title
        return node


class Recorder(_Quiet):
    """Collect node events; its methods have the engine hooks' signatures."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.nodes: list[NodeRecord] = []
        self._names = FirstNames()

    def _add(self, desc: Descriptor, action: Action, moved: int) -> None:
        self._names.note(desc)
        self.nodes.append(NodeRecord(desc, action, moved))

    def pre_copy(self, desc: Descriptor) -> None:
        """Ignore a transfer that is starting: only finished nodes are recorded."""

    def post_copy(self, desc: Descriptor) -> None:
        """Record a node whose bytes were transferred."""
        self._add(desc, "copied", desc.size)

    def on_copy_skipped(self, desc: Descriptor) -> None:
        """Record a node the destination already held."""
        self._add(desc, "exists", 0)

    def on_mounted(self, desc: Descriptor) -> None:
        """Record a blob mounted from another repository (no bytes moved)."""
        self._add(desc, "mounted", 0)

    def on_deduplicated(self, desc: Descriptor) -> None:
        """Record a second occurrence of a digest under another name, as the text lines do."""
        if self._names.renamed(desc):
            self.nodes.append(NodeRecord(desc, "skipped", 0))

    def totals(self) -> dict[str, int]:
        """Count nodes per action and the bytes moved."""
        counts = {"nodes": len(self.nodes), "copied": 0, "mounted": 0, "exists": 0, "skipped": 0}
        for node in self.nodes:
            counts[node.action] += 1
        counts["bytes"] = sum(node.bytes for node in self.nodes)
        return counts


def result_document(
    *,
    source: dict[str, str],
    destination: dict[str, str],
    root: Descriptor,
    tags: list[str],
    recorder: Recorder,
) -> str:
    """Render the ``--format json`` document of a finished copy, ending with a newline."""
    document = {
        "schemaVersion": SCHEMA_VERSION,
        "source": source,
        "destination": destination,
        "root": _descriptor_json(root),
        "tags": tags,
        "nodes": [node.to_json() for node in recorder.nodes],
        "totals": recorder.totals(),
        "durationSeconds": round(time.monotonic() - recorder.started, 3),
    }
    return json.dumps(document, indent=2) + "\n"


def _descriptor_json(desc: Descriptor) -> dict[str, Any]:
    return {"mediaType": desc.media_type, "digest": desc.digest, "size": desc.size}


def tags_document(
    *,
    source: dict[str, str],
    destination: dict[str, str],
    results: list[tuple[str, Descriptor | None, str | None]],
    recorder: Recorder,
) -> str:
    """Render the ``--all-tags --format json`` document: one result per tag, then the nodes."""
    document = {
        "schemaVersion": SCHEMA_VERSION,
        "allTags": True,
        "source": source,
        "destination": destination,
        "results": [
            {"tag": tag, "root": _descriptor_json(root)}
            if root is not None
            else {"tag": tag, "error": error or "failed"}
            for tag, root, error in results
        ],
        "nodes": [node.to_json() for node in recorder.nodes],
        "totals": recorder.totals(),
        "durationSeconds": round(time.monotonic() - recorder.started, 3),
    }
    return json.dumps(document, indent=2) + "\n"


def plan_document(
    *,
    source: dict[str, str],
    destination: dict[str, str],
    root: Descriptor,
    tags: list[str],
    steps: Sequence[tuple[Descriptor, str, str | None]],
) -> str:
    """Render the ``--dry-run --format json`` document: what each node would need."""
    nodes = []
    totals = {"nodes": len(steps), "copy": 0, "mount": 0, "exists": 0, "bytes": 0}
    for desc, action, mount_from in steps:
        moved = desc.size if action == "copy" else 0
        node: dict[str, Any] = {**_descriptor_json(desc), "action": action, "bytes": moved}
        if mount_from:
            node["from"] = mount_from
        if desc.title:
            node["title"] = desc.title
        nodes.append(node)
        totals[action] += 1
        totals["bytes"] += moved
    document = {
        "schemaVersion": SCHEMA_VERSION,
        "dryRun": True,
        "source": source,
        "destination": destination,
        "root": _descriptor_json(root),
        "tags": tags,
        "nodes": nodes,
        "totals": totals,
    }
    return json.dumps(document, indent=2) + "\n"

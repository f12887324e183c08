"""Users, passwords and permissions of the auth tests, and docker config / credential helpers.

Users and what the token server lets them do (``ACL``):

- ``alice`` (``ALICE_PASSWORD``): pull and push everywhere;
- ``bob`` (``BOB_PASSWORD``): pull and push on ``bob/*``, pull on ``shared/*``, nothing else;
- anonymous: pull on ``public/*``.

The htpasswd registries know the same users and passwords (any user may do anything there).
"""

from __future__ import annotations

import base64
import json
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "ACL",
    "ALICE_PASSWORD",
    "ANONYMOUS_ACL",
    "BASIC_REALM",
    "BOB_PASSWORD",
    "USERS",
    "credential_helper",
    "docker_config",
    "stored_auth",
]

# Distinctive, so that a test can search output and files for them and find nothing else.
ALICE_PASSWORD = "alice-Pa55-7f3c9e"
BOB_PASSWORD = "bob-Pa55-41d2b8"
USERS = {"alice": ALICE_PASSWORD, "bob": BOB_PASSWORD}
ACL = {
    "alice": {"*": "pull,push"},
    "bob": {"bob/*": "pull,push", "shared/*": "pull"},
}
ANONYMOUS_ACL = {"public/*": "pull"}
BASIC_REALM = "orascp-test-registry"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def docker_config(
    path: Path,
    auths: Mapping[str, tuple[str, str]] | None = None,
    **extra: Any,
) -> Path:
    """Write a docker ``config.json``: ``auths`` maps a registry host to ``(user, password)``.

    ``extra`` adds top-level keys (``credHelpers``, ``credsStore``, anything else).
    """
    config: dict[str, Any] = dict(extra)
    if auths is not None:
        config["auths"] = {
            host: {"auth": _b64(f"{user}:{password}")} for host, (user, password) in auths.items()
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    return path


def stored_auth(path: Path, host: str) -> tuple[str, str] | None:
    """Return the ``(user, password)`` a docker config stores for ``host`` in ``auths``."""
    entry = json.loads(path.read_text()).get("auths", {}).get(host)
    if not entry:
        return None
    if "auth" in entry:
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        return user, password
    return entry.get("username"), entry.get("password")


def credential_helper(
    bin_dir: Path, name: str, credentials: Mapping[str, tuple[str, str]], log: Path
) -> Path:
    """Write ``docker-credential-<name>`` into ``bin_dir``; return its path.

    ``get`` answers the docker credential-helper protocol from ``credentials`` (server URL, as
    read on stdin, to ``(user, secret)``), else exits 1 with "credentials not found in native
    keychain" as the real helpers do. Every call appends ``<action> <stdin>`` to ``log``.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    table = {
        url: {"ServerURL": url, "Username": user, "Secret": secret}
        for url, (user, secret) in credentials.items()
    }
    script = bin_dir / f"docker-credential-{name}"
    # Python rather than sh, to speak JSON without quoting trouble; the interpreter is the one
    # running the tests, so the helper works wherever they do.
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"TABLE = {json.dumps(table)!r}\n"
        "action = sys.argv[1] if len(sys.argv) > 1 else ''\n"
        "data = sys.stdin.read().strip()\n"
        f"with open({str(log)!r}, 'a') as log:\n"
        "    log.write(f'{action} {data}\\n')\n"
        "if action != 'get':\n"
        "    sys.exit(0)\n"
        "table = json.loads(TABLE)\n"
        "for key in (data, data.removeprefix('https://'), data.removeprefix('http://')):\n"
        "    if key in table:\n"
        "        print(json.dumps(table[key]))\n"
        "        sys.exit(0)\n"
        "print('credentials not found in native keychain')\n"
        "sys.exit(1)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script

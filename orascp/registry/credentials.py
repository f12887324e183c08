"""Find registry credentials where docker, oras and podman keep them, and store them for ``login``.

Where credentials are looked for (first hit wins, anonymous if none):

1. the ``--registry-config`` files, in the order given;
2. docker's config: ``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``;
3. the containers auth file podman and skopeo write: ``$REGISTRY_AUTH_FILE``, else
   ``$XDG_RUNTIME_DIR/containers/auth.json``.

Within one file ``credHelpers[<server>]`` names a credential helper, else ``credsStore`` does, and
``auths`` holds credentials inline. A helper that has nothing for the server hands over to
``auths`` of the same file, then to the next file. Helpers speak the docker-credential-helpers
protocol (https://github.com/docker/docker-credential-helpers#development):
``docker-credential-<name> get|store|erase`` with the request on stdin and JSON on stdout.

Secrets do not leak by accident: a Credential's ``repr`` leaves them out, and error messages name
files, registries and helpers but never quote a file's content or a helper's stdout.

Only the standard library is used: ``orascp login`` and the registry client both read credentials,
and reading a JSON file should not pull httpx or rich in.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orascp.errors import OrascpError, quote

__all__ = [
    "DEFAULT_HELPER_TIMEOUT",
    "DOCKER_HUB_SERVER",
    "HELPER_PREFIX",
    "TOKEN_USERNAME",
    "Credential",
    "CredentialError",
    "CredentialStore",
    "server_address",
]

# The key docker has always kept Docker Hub credentials under, whichever Hub name the user typed.
DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
_DOCKER_HUB_HOSTS = frozenset({"docker.io", "registry-1.docker.io", "index.docker.io"})
HELPER_PREFIX = "docker-credential-"
# Long enough for a helper waiting for a keychain to be unlocked, short enough that a hung helper
# does not hang orascp.
DEFAULT_HELPER_TIMEOUT = 30.0
# The Username a helper answers with when the Secret is an identity (refresh) token.
TOKEN_USERNAME = "<token>"
# docker-credential-helpers says "credentials not found in native keychain"; other helpers reword
# the end, so only the start is compared.
_NOT_FOUND_MESSAGE = b"credentials not found"
# A failing helper's stderr goes into a one-line message; beyond this it is noise.
_MAX_STDERR_CHARS = 200
# The name becomes part of an executable's name: a "/" would let a config file run any program.
_HELPER_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
# What may follow the host in an ``auths`` key without a scheme and still mean the whole registry;
# anything else (podman's ``host/namespace``) is scoped to some repositories only.
_REGISTRY_PATHS = frozenset({"", "/", "/v1", "/v1/", "/v2", "/v2/"})
_CONFIG_MODE = 0o600
_CONFIG_DIR_MODE = 0o700


class CredentialError(OrascpError):
    """Report a credentials file or credential helper that cannot be used."""

    reference = "credentials"


@dataclass(frozen=True, slots=True)
class Credential:
    """Hold what to authenticate to one registry with, and where it was found."""

    username: str = ""
    password: str = field(default="", repr=False)
    # OAuth2 refresh token ("identitytoken"), exchanged for access tokens.
    identity_token: str = field(default="", repr=False)
    # Bearer access token sent as is ("registrytoken").
    registry_token: str = field(default="", repr=False)
    # Where it came from, for messages: "command line", a config file, "docker-credential-<name>".
    source: str = ""

    @property
    def is_anonymous(self) -> bool:
        """Tell whether there is nothing at all to authenticate with."""
        return not (self.username or self.password or self.identity_token or self.registry_token)


def server_address(registry: str) -> str:
    """Map docker.io, registry-1.docker.io, index.docker.io to DOCKER_HUB_SERVER.

    Any other registry (``host[:port]``) maps to itself.
    """
    if registry.lower() in _DOCKER_HUB_HOSTS:
        return DOCKER_HUB_SERVER
    return registry


class CredentialStore:
    """Look credentials up in config files and credential helpers; store and erase them.

    ``get`` runs credential helpers synchronously: call it from a thread inside an event loop.
    Its answers are cached per server for the life of the store; ``store`` and ``erase`` drop the
    server's cached answer.
    """

    def __init__(
        self,
        config_paths: Sequence[str | os.PathLike[str]] = (),
        *,
        environ: Mapping[str, str] | None = None,
        helper_timeout: float = DEFAULT_HELPER_TIMEOUT,
    ) -> None:
        # A lone path is a Sequence too (of characters): take it as the one path it means.
        if isinstance(config_paths, str | os.PathLike):
            config_paths = (config_paths,)
        self._config_paths = tuple(Path(p) for p in config_paths)
        self._environ = dict(os.environ if environ is None else environ)
        self._helper_timeout = helper_timeout
        self._cache: dict[str, Credential] = {}

    # -- lookup -----------------------------------------------------------------------------

    def get(self, registry: str) -> Credential:
        """Return the first credential found for ``registry``, or an anonymous one."""
        server = server_address(registry)
        cached = self._cache.get(server)
        if cached is None:
            cached = self._cache[server] = self._lookup(server)
        return cached

    def _lookup(self, server: str) -> Credential:
        for path in self._search_paths():
            data = _read_config(path)
            if data is None:
                continue
            found = self._lookup_in(path, data, server)
            if found is not None:
                return found
        return Credential()

    def _lookup_in(self, path: Path, data: dict[str, Any], server: str) -> Credential | None:
        name = _helper_name(path, data, server)
        if name is not None:
            found = self._helper(name, path).get(server)
            if found is not None:
                return found
        auths = _object_field(path, data, "auths")
        key = _find_key(auths, server)
        if key is None:
            return None
        credential = _parse_entry(path, key, auths[key])
        # docker login with a credsStore leaves an empty entry behind: it holds nothing to use.
        return None if credential.is_anonymous else credential

    def _search_paths(self) -> list[Path]:
        paths = [*self._config_paths, self._docker_config()]
        auth_file = self._containers_auth_file()
        if auth_file is not None:
            paths.append(auth_file)
        # The same file named twice (say --registry-config ~/.docker/config.json) would run its
        # helper twice for nothing.
        seen: set[str] = set()
        unique = []
        for path in paths:
            real = os.path.realpath(path)
            if real not in seen:
                seen.add(real)
                unique.append(path)
        return unique

    def _docker_config(self) -> Path:
        directory = self._environ.get("DOCKER_CONFIG")
        if directory:
            return Path(directory) / "config.json"
        home = self._environ.get("HOME")
        if not home:
            try:
                home = str(Path.home())
            except RuntimeError:
                raise CredentialError(
                    "cannot find the docker config: HOME is not set",
                    hint="set HOME or DOCKER_CONFIG, or pass --registry-config",
                ) from None
        return Path(home) / ".docker" / "config.json"

    def _containers_auth_file(self) -> Path | None:
        auth_file = self._environ.get("REGISTRY_AUTH_FILE")
        if auth_file:
            return Path(auth_file)
        runtime_dir = self._environ.get("XDG_RUNTIME_DIR")
        if runtime_dir:
            return Path(runtime_dir) / "containers" / "auth.json"
        return None

    def _helper(self, name: str, config: Path) -> _Helper:
        if not _HELPER_NAME_RE.fullmatch(name):
            raise CredentialError(
                f"credential helper name {quote(name)} in {config} is not valid",
                hint="a helper name is the part after docker-credential-, e.g. pass or desktop",
            )
        return _Helper(name, config, self._environ, self._helper_timeout)

    # -- login and logout -------------------------------------------------------------------

    def store(self, registry: str, credential: Credential) -> str:
        """Store ``credential`` for ``registry``; return where it went (helper or file path).

        It goes to the first ``--registry-config`` file, else to docker's config: through its
        credential helper for that server if it has one, else into its ``auths``.
        """
        server = server_address(registry)
        if credential.is_anonymous:
            raise CredentialError(f"no credentials to store for {quote(registry)}")
        self._cache.pop(server, None)
        path = self._target()
        data = _read_config(path)
        if data is None:
            data = {}
        name = _helper_name(path, data, server)
        if name is not None:
            helper = self._helper(name, path)
            helper.store(server, credential)
            return helper.program
        auths = dict(_object_field(path, data, "auths"))
        auths[server] = _encode_entry(server, credential)
        data["auths"] = auths
        _write_config(path, data)
        return str(path)

    def erase(self, registry: str) -> bool:
        """Remove the stored credentials of ``registry``; return whether anything was removed.

        Both the helper's entry and ``auths`` entries for the same host (legacy keys included)
        go, as docker logout does: an entry left in ``auths`` would still be found by ``get``.
        """
        server = server_address(registry)
        self._cache.pop(server, None)
        path = self._target()
        data = _read_config(path)
        if data is None:
            return False
        removed = False
        name = _helper_name(path, data, server)
        if name is not None:
            removed = self._helper(name, path).erase(server)
        auths = _object_field(path, data, "auths")
        keys = _matching_keys(auths, server)
        if keys:
            data["auths"] = {key: value for key, value in auths.items() if key not in keys}
            _write_config(path, data)
            removed = True
        return removed

    def _target(self) -> Path:
        return self._config_paths[0] if self._config_paths else self._docker_config()


@dataclass(frozen=True, slots=True)
class _Helper:
    """Run one ``docker-credential-<name>`` program."""

    name: str
    config: Path  # the file that named it, for messages
    environ: Mapping[str, str]
    timeout: float

    @property
    def program(self) -> str:
        """Return the executable's name."""
        return HELPER_PREFIX + self.name

    def get(self, server: str) -> Credential | None:
        """Return the helper's credential for ``server``, or None if it has none."""
        out = self._run("get", server, not_found_ok=True)
        if out is None:
            return None
        try:
            answer = json.loads(out)
        except (ValueError, RecursionError):
            raise CredentialError(
                f"credential helper {self.program} answered get with something that is not JSON",
                hint=self._hint(),
            ) from None
        fields = _answer_fields(answer)
        if fields is None:
            raise CredentialError(
                f"credential helper {self.program} answered get with JSON that is not a"
                ' credential (it needs "Username" and "Secret" strings)',
                hint=self._hint(),
            )
        username, secret = fields
        if not username and not secret:
            return None
        if username == TOKEN_USERNAME:
            return Credential(identity_token=secret, source=self.program)
        return Credential(username=username, password=secret, source=self.program)

    def store(self, server: str, credential: Credential) -> None:
        """Hand ``credential`` to the helper."""
        if credential.identity_token:
            username, secret = TOKEN_USERNAME, credential.identity_token
        elif credential.registry_token:
            # The protocol has no field for it: a helper would hand it back as a password.
            raise CredentialError(
                f"credential helper {self.program} cannot store a registry token",
                hint=f"log in with a username and password, or use a config file without"
                f" credsStore/credHelpers ({self.config} has one)",
            )
        else:
            username, secret = credential.username, credential.password
        request = json.dumps({"ServerURL": server, "Username": username, "Secret": secret})
        self._run("store", request, not_found_ok=False, secrets=(secret,))

    def erase(self, server: str) -> bool:
        """Ask the helper to forget ``server``; return False if it had nothing for it."""
        return self._run("erase", server, not_found_ok=True) is not None

    def _run(
        self, action: str, request: str, *, not_found_ok: bool, secrets: tuple[str, ...] = ()
    ) -> bytes | None:
        """Run ``<program> <action>`` with ``request`` on stdin; return stdout.

        Return None when the helper says it has no credentials and ``not_found_ok``. Nothing from
        stdout ever goes into a message: a helper may print the secret there before failing.
        """
        executable = shutil.which(self.program, path=self.environ.get("PATH", os.defpath))
        if executable is None:
            raise CredentialError(
                f"credential helper {self.program} (named in {self.config}) is not installed:"
                " it is not in PATH",
                hint=f"install {self.program}, or remove it from credsStore/credHelpers in"
                f" {self.config}",
            )
        try:
            done = subprocess.run(
                [executable, action],
                input=request.encode(),
                capture_output=True,
                timeout=self.timeout,
                env=dict(self.environ),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CredentialError(
                f"credential helper {self.program} did not answer {action} within"
                f" {self.timeout:g} seconds",
                hint=f"check that {self.program} works on its own (it may be waiting for a"
                " keychain to be unlocked)",
            ) from None
        except OSError as exc:
            raise CredentialError(
                f"cannot run credential helper {self.program}: {exc.strerror or exc}",
                hint=self._hint(),
            ) from None
        if done.returncode == 0:
            return done.stdout
        if not_found_ok and _NOT_FOUND_MESSAGE in (done.stdout + done.stderr).lower():
            return None
        if done.returncode < 0:
            reason = f"was killed by signal {-done.returncode}"
        else:
            reason = f"failed with exit status {done.returncode}"
        stderr = _summarise(done.stderr, secrets)
        raise CredentialError(
            f"credential helper {self.program} {action} {reason}"
            + (f": {quote(stderr)}" if stderr else ""),
            hint=self._hint(),
        )

    def _hint(self) -> str:
        return f"check that {self.program} works on its own; {self.config} names it"


def _answer_fields(answer: Any) -> tuple[str, str] | None:
    """Return Username and Secret of a helper's answer, or None if it is not a credential."""
    if not isinstance(answer, dict):
        return None
    # null reads as "", as Go's encoding/json (which the helpers are written with) reads it.
    username = answer.get("Username") or ""
    secret = answer.get("Secret") or ""
    if not isinstance(username, str) or not isinstance(secret, str):
        return None
    return username, secret


# -- config files ---------------------------------------------------------------------------


def _read_config(path: Path) -> dict[str, Any] | None:
    """Return a config file's JSON object: None if it is missing, empty if it is blank."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialError(
            f"cannot read credentials file {path}: {exc.strerror or exc}"
        ) from None
    if not raw.strip():
        return {}
    # Only the position of a syntax error is reported: the file's text may hold secrets.
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise CredentialError(
            f"credentials file {path} is not valid JSON (line {exc.lineno} column {exc.colno})",
            hint=f"fix or remove {path}",
        ) from None
    except (ValueError, RecursionError):
        raise CredentialError(
            f"credentials file {path} is not valid JSON", hint=f"fix or remove {path}"
        ) from None
    if not isinstance(data, dict):
        raise CredentialError(
            f"credentials file {path} is not a JSON object", hint=f"fix or remove {path}"
        )
    return data


def _object_field(path: Path, data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key)
    if value is None:  # absent, or null as Go's encoding/json writes an empty map
        return {}
    if not isinstance(value, dict):
        raise CredentialError(f"{quote(key)} in {path} is not a JSON object")
    return value


def _helper_name(path: Path, data: dict[str, Any], server: str) -> str | None:
    """Return the helper that keeps ``server``'s credentials in this file, if any."""
    helpers = _object_field(path, data, "credHelpers")
    key = _find_key(helpers, server)
    if key is not None:
        name = helpers[key]
        if not isinstance(name, str):
            raise CredentialError(f"credHelpers entry {quote(key)} in {path} is not a string")
        # As in docker: an empty helper for one registry opts it out of credsStore.
        return name or None
    store = data.get("credsStore")
    if store is not None and not isinstance(store, str):
        raise CredentialError(f"credsStore in {path} is not a string")
    return store or None


def _key_server(key: str) -> str | None:
    """Return the lowercase server address an ``auths`` or ``credHelpers`` key stands for.

    Legacy docker keys are URLs (``https://host/``, ``http://host``, ``https://host/v1/``) and
    stand for their host. A key scoped to a namespace (podman's ``host/team``) gives None: it
    does not hold credentials for the whole registry.
    """
    scheme, sep, rest = key.partition("://")
    if sep:
        if scheme.lower() not in ("http", "https"):
            return None
        host = rest.split("/", 1)[0]
    else:
        host, slash, tail = key.partition("/")
        if slash + tail not in _REGISTRY_PATHS:
            return None
    return server_address(host.lower()) if host else None


def _find_key(mapping: Mapping[str, Any], server: str) -> str | None:
    """Return the key of ``mapping`` for ``server``: the exact one, else the first legacy one."""
    if server in mapping:
        return server
    wanted = server.lower()
    return next((key for key in mapping if _key_server(key) == wanted), None)


def _matching_keys(mapping: Mapping[str, Any], server: str) -> set[str]:
    wanted = server.lower()
    return {key for key in mapping if key == server or _key_server(key) == wanted}


def _parse_entry(path: Path, key: str, entry: Any) -> Credential:
    """Read one ``auths`` entry; ``auth`` (base64 of ``user:password``) wins over the fields."""
    where = f"auths entry {quote(key)} in {path}"
    if not isinstance(entry, dict):
        raise CredentialError(f"{where} is not a JSON object", hint=f"fix or remove it in {path}")
    fields: dict[str, str] = {}
    for name in ("auth", "username", "password", "identitytoken", "registrytoken"):
        value = entry.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise CredentialError(
                f"{where}: {quote(name)} is not a string", hint=f"fix or remove it in {path}"
            )
        fields[name] = value
    username, password = fields["username"], fields["password"]
    if fields["auth"]:
        username, password = _decode_auth(fields["auth"], where, path)
    return Credential(
        username=username,
        password=password,
        identity_token=fields["identitytoken"],
        registry_token=fields["registrytoken"],
        source=str(path),
    )


def _decode_auth(value: str, where: str, path: Path) -> tuple[str, str]:
    # Go's base64 decoder skips line breaks, so files docker reads may have them.
    compact = value.replace("\n", "").replace("\r", "")
    try:
        decoded = base64.b64decode(compact, validate=True).decode()
    except (binascii.Error, ValueError):
        raise CredentialError(
            f'{where}: "auth" is not base64 of a UTF-8 user:password',
            hint=f"fix or remove it in {path}, or log in again",
        ) from None
    username, colon, password = decoded.partition(":")
    if not colon:
        raise CredentialError(
            f'{where}: "auth" does not hold user:password (there is no colon)',
            hint=f"fix or remove it in {path}, or log in again",
        )
    return username, password


def _encode_entry(registry: str, credential: Credential) -> dict[str, str]:
    if credential.identity_token:
        return {"identitytoken": credential.identity_token}
    if credential.registry_token:
        return {"registrytoken": credential.registry_token}
    if ":" in credential.username:
        # "auth" is user:password split at the first colon: it would not read back the same.
        raise CredentialError(
            f"cannot store a username with a colon for {quote(registry)} in a config file"
        )
    raw = f"{credential.username}:{credential.password}".encode()
    return {"auth": base64.b64encode(raw).decode("ascii")}


def _write_config(path: Path, data: dict[str, Any]) -> None:
    """Replace the config file atomically: temporary file, fsync, ``os.replace``, mode 0600.

    A symlinked config (dotfiles) is written through, so the link stays a link.
    """
    target = Path(os.path.realpath(path))
    payload = (json.dumps(data, indent="\t", ensure_ascii=False) + "\n").encode()
    try:
        target.parent.mkdir(mode=_CONFIG_DIR_MODE, parents=True, exist_ok=True)
        # mkstemp creates the file 0600 whatever the umask, so no secret is ever world-readable.
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise CredentialError(f"cannot write {path}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), _CONFIG_MODE)
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        raise CredentialError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    # The file is in place already; a file system that cannot fsync a directory is no error.
    with contextlib.suppress(OSError):
        _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _summarise(stderr: bytes, secrets: tuple[str, ...]) -> str:
    """Return a helper's stderr on one line, short, with the secrets it was given masked."""
    text = stderr.decode(errors="replace")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    if len(text) > _MAX_STDERR_CHARS:
        text = text[: _MAX_STDERR_CHARS - 1] + "…"
    return text

"""Find, store and erase registry credentials: config files, legacy keys, credential helpers.

Every test builds its own HOME, PATH and config files under tmp_path and passes them as an
explicit ``environ``; fake credential helpers are small scripts on that PATH.
"""

from __future__ import annotations

import ast
import base64
import json
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import orascp.registry.credentials as credentials_module
from orascp.errors import OrascpError
from orascp.registry.credentials import (
    DOCKER_HUB_SERVER,
    Credential,
    CredentialError,
    CredentialStore,
    server_address,
)

SECRET = "s3cr3t-Pa55"
STDOUT_SECRET = "leaked-from-stdout-9f2c"

# A helper that keeps its credentials in $FAKE_HELPER_DB and appends each call to $FAKE_HELPER_LOG,
# answering as docker-credential-helpers does.
FAKE_HELPER = f"""#!{sys.executable}
import json, os, sys
action, request = sys.argv[1], sys.stdin.read()
with open(os.environ["FAKE_HELPER_LOG"], "a") as log:
    log.write(json.dumps({{"action": action, "stdin": request}}) + "\\n")
db_path = os.environ["FAKE_HELPER_DB"]
db = json.load(open(db_path)) if os.path.exists(db_path) else {{}}
def not_found():
    print("credentials not found in native keychain")
    sys.exit(1)
if action == "get":
    if request not in db:
        not_found()
    user, secret = db[request]
    print(json.dumps({{"ServerURL": request, "Username": user, "Secret": secret}}))
elif action == "store":
    obj = json.loads(request)
    db[obj["ServerURL"]] = [obj["Username"], obj["Secret"]]
    json.dump(db, open(db_path, "w"))
elif action == "erase":
    if request not in db:
        not_found()
    del db[request]
    json.dump(db, open(db_path, "w"))
else:
    sys.exit(2)
"""


class Env:
    """Hold a fake HOME, a PATH with a bin directory first, and the environ to pass."""

    def __init__(self, tmp_path: Path, **extra: str) -> None:
        self.root = tmp_path
        self.home = tmp_path / "home"
        self.bin = tmp_path / "bin"
        self.home.mkdir(exist_ok=True)
        self.bin.mkdir(exist_ok=True)
        self.helper_db = tmp_path / "helper-db.json"
        self.helper_log = tmp_path / "helper-log.jsonl"
        self.environ = {
            "HOME": str(self.home),
            "PATH": os.pathsep.join([str(self.bin), "/usr/bin", "/bin"]),
            "FAKE_HELPER_DB": str(self.helper_db),
            "FAKE_HELPER_LOG": str(self.helper_log),
            **extra,
        }

    @property
    def docker_config(self) -> Path:
        return self.home / ".docker" / "config.json"

    def script(self, name: str, text: str, *, executable: bool = True) -> Path:
        path = self.bin / f"docker-credential-{name}"
        path.write_text(text)
        path.chmod(0o755 if executable else 0o644)
        return path

    def fake_helper(self, name: str = "fake", db: dict[str, list[str]] | None = None) -> None:
        self.script(name, FAKE_HELPER)
        if db is not None:
            self.helper_db.write_text(json.dumps(db))

    def helper_calls(self) -> list[dict[str, str]]:
        if not self.helper_log.exists():
            return []
        return [json.loads(line) for line in self.helper_log.read_text().splitlines()]

    def helper_db_content(self) -> dict[str, list[str]]:
        return json.loads(self.helper_db.read_text()) if self.helper_db.exists() else {}

    def store(self, *paths: Path, timeout: float = 30.0) -> CredentialStore:
        return CredentialStore(paths, environ=self.environ, helper_timeout=timeout)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def write_json(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def auths(*entries: tuple[str, str, str]) -> dict[str, Any]:
    return {"auths": {key: {"auth": b64(f"{user}:{password}")} for key, user, password in entries}}


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


# -- Credential and server_address ------------------------------------------------------------


def test_repr_and_str_leave_secrets_out() -> None:
    cred = Credential(
        username="alice",
        password="pw-" + SECRET,
        identity_token="it-" + SECRET,
        registry_token="rt-" + SECRET,
        source="command line",
    )
    for text in (repr(cred), str(cred), f"{cred}", repr([cred])):
        assert SECRET not in text
        assert "alice" in text
        assert "command line" in text


@pytest.mark.parametrize(
    ("credential", "anonymous"),
    [
        (Credential(), True),
        (Credential(source="somewhere"), True),
        (Credential(username="u"), False),
        (Credential(password="p"), False),
        (Credential(identity_token="t"), False),
        (Credential(registry_token="t"), False),
    ],
)
def test_is_anonymous(credential: Credential, anonymous: bool) -> None:
    assert credential.is_anonymous is anonymous


@pytest.mark.parametrize(
    ("registry", "server"),
    [
        ("docker.io", DOCKER_HUB_SERVER),
        ("registry-1.docker.io", DOCKER_HUB_SERVER),
        ("index.docker.io", DOCKER_HUB_SERVER),
        ("Docker.IO", DOCKER_HUB_SERVER),
        ("localhost:5000", "localhost:5000"),
        ("ghcr.io", "ghcr.io"),
        ("[::1]:5000", "[::1]:5000"),
        ("docker.io:443", "docker.io:443"),
    ],
)
def test_server_address(registry: str, server: str) -> None:
    assert server_address(registry) == server


def test_credential_error_is_an_orascp_error() -> None:
    assert issubclass(CredentialError, OrascpError)
    assert CredentialError.reference == "credentials"


def test_module_imports_only_the_standard_library_and_orascp() -> None:
    tree = ast.parse(Path(credentials_module.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported
    assert not imported & {"httpx", "rich", "typer"}
    assert imported - {"orascp", "__future__"} <= set(sys.stdlib_module_names)


# -- lookup order -----------------------------------------------------------------------------


def test_nothing_configured_is_anonymous(tmp_path: Path) -> None:
    env = Env(tmp_path)
    cred = env.store(tmp_path / "missing.json").get("localhost:5000")
    assert cred == Credential()
    assert cred.is_anonymous


def test_explicit_config_paths_are_tried_in_order(tmp_path: Path) -> None:
    env = Env(tmp_path)
    first = write_json(tmp_path / "a.json", auths(("localhost:5000", "first", "p1")))
    second = write_json(
        tmp_path / "b.json",
        auths(("localhost:5000", "second", "p2"), ("ghcr.io", "gh", "p3")),
    )
    store = env.store(first, second)
    assert store.get("localhost:5000") == Credential("first", "p1", source=str(first))
    # Not in the first file: the second one answers.
    assert store.get("ghcr.io") == Credential("gh", "p3", source=str(second))
    assert env.store(second, first).get("localhost:5000").username == "second"


def test_missing_explicit_file_is_skipped(tmp_path: Path) -> None:
    env = Env(tmp_path)
    good = write_json(tmp_path / "good.json", auths(("localhost:5000", "u", "p")))
    assert env.store(tmp_path / "nope.json", good).get("localhost:5000").username == "u"


def test_explicit_files_come_before_docker_config_and_auth_file(tmp_path: Path) -> None:
    auth_file = write_json(tmp_path / "auth.json", auths(("r.example", "podman", "p")))
    env = Env(tmp_path, REGISTRY_AUTH_FILE=str(auth_file))
    write_json(env.docker_config, auths(("r.example", "docker", "p")))
    explicit = write_json(tmp_path / "explicit.json", auths(("r.example", "explicit", "p")))
    assert env.store(explicit).get("r.example").username == "explicit"
    assert env.store().get("r.example").username == "docker"
    env.docker_config.unlink()
    assert env.store().get("r.example") == Credential("podman", "p", source=str(auth_file))


def test_docker_config_env_replaces_home(tmp_path: Path) -> None:
    config_dir = tmp_path / "dockercfg"
    env = Env(tmp_path, DOCKER_CONFIG=str(config_dir))
    write_json(env.docker_config, auths(("r.example", "from-home", "p")))
    assert env.store().get("r.example").is_anonymous
    write_json(config_dir / "config.json", auths(("r.example", "from-docker-config", "p")))
    cred = env.store().get("r.example")
    assert cred.username == "from-docker-config"
    assert cred.source == str(config_dir / "config.json")


def test_home_comes_from_the_given_environ(tmp_path: Path) -> None:
    env = Env(tmp_path)
    write_json(env.docker_config, auths(("r.example", "home-user", "p")))
    cred = env.store().get("r.example")
    assert cred.username == "home-user"
    assert cred.source == str(env.docker_config)


def test_registry_auth_file_wins_over_xdg_runtime_dir(tmp_path: Path) -> None:
    runtime = tmp_path / "run"
    write_json(runtime / "containers" / "auth.json", auths(("r.example", "xdg", "p")))
    auth_file = write_json(tmp_path / "auth.json", auths(("r.example", "raf", "p")))
    env = Env(tmp_path, XDG_RUNTIME_DIR=str(runtime), REGISTRY_AUTH_FILE=str(auth_file))
    assert env.store().get("r.example").username == "raf"
    del env.environ["REGISTRY_AUTH_FILE"]
    cred = env.store().get("r.example")
    assert cred.username == "xdg"
    assert cred.source == str(runtime / "containers" / "auth.json")


def test_no_auth_file_without_either_variable(tmp_path: Path) -> None:
    env = Env(tmp_path)
    write_json(tmp_path / "run" / "containers" / "auth.json", auths(("r.example", "x", "p")))
    assert env.store().get("r.example").is_anonymous


def test_a_single_path_string_is_one_path(tmp_path: Path) -> None:
    env = Env(tmp_path)
    config = write_json(tmp_path / "c.json", auths(("r.example", "u", "p")))
    store = CredentialStore(str(config), environ=env.environ)
    assert store.get("r.example").username == "u"


# -- auths entries ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "https://localhost:5000/",
        "http://localhost:5000",
        "https://localhost:5000/v1/",
        "https://localhost:5000/v2/",
        "HTTPS://LOCALHOST:5000",
        "localhost:5000/",
    ],
)
def test_legacy_keys_match_by_host(tmp_path: Path, key: str) -> None:
    env = Env(tmp_path)
    config = write_json(tmp_path / "c.json", auths((key, "legacy", "p")))
    store = env.store(config)
    assert store.get("localhost:5000") == Credential("legacy", "p", source=str(config))
    assert store.get("localhost:5001").is_anonymous
    assert store.get("localhost").is_anonymous


def test_exact_key_wins_over_a_legacy_key(tmp_path: Path) -> None:
    env = Env(tmp_path)
    config = write_json(
        tmp_path / "c.json",
        auths(("https://r.example/", "legacy", "p"), ("r.example", "exact", "p")),
    )
    assert env.store(config).get("r.example").username == "exact"


def test_namespace_scoped_keys_do_not_match_the_registry(tmp_path: Path) -> None:
    env = Env(tmp_path)
    config = write_json(tmp_path / "c.json", auths(("quay.io/team-a", "team", "p")))
    assert env.store(config).get("quay.io").is_anonymous


@pytest.mark.parametrize("registry", ["docker.io", "registry-1.docker.io", "index.docker.io"])
def test_docker_hub_names_find_the_index_entry(tmp_path: Path, registry: str) -> None:
    env = Env(tmp_path)
    write_json(env.docker_config, auths((DOCKER_HUB_SERVER, "hubuser", "hubpass")))
    assert env.store().get(registry) == Credential(
        "hubuser", "hubpass", source=str(env.docker_config)
    )


@pytest.mark.parametrize("key", ["docker.io", "registry-1.docker.io", "https://index.docker.io"])
def test_docker_hub_entries_under_other_hub_names(tmp_path: Path, key: str) -> None:
    env = Env(tmp_path)
    write_json(env.docker_config, auths((key, "hubuser", "hubpass")))
    assert env.store().get("docker.io").username == "hubuser"


def test_auth_overrides_username_and_password(tmp_path: Path) -> None:
    env = Env(tmp_path)
    entry = {"auth": b64("from-auth:auth-pass"), "username": "field-user", "password": "field-pw"}
    config = write_json(tmp_path / "c.json", {"auths": {"r.example": entry}})
    assert env.store(config).get("r.example") == Credential(
        "from-auth", "auth-pass", source=str(config)
    )


def test_auth_password_may_hold_colons(tmp_path: Path) -> None:
    env = Env(tmp_path)
    config = write_json(tmp_path / "c.json", auths(("r.example", "u", "pa:ss:word")))
    assert env.store(config).get("r.example").password == "pa:ss:word"


def test_username_and_password_fields(tmp_path: Path) -> None:
    env = Env(tmp_path)
    entry = {"username": "field-user", "password": "field-pw", "email": "ignored@example.com"}
    config = write_json(tmp_path / "c.json", {"auths": {"r.example": entry}})
    assert env.store(config).get("r.example") == Credential(
        "field-user", "field-pw", source=str(config)
    )


def test_identity_and_registry_tokens(tmp_path: Path) -> None:
    env = Env(tmp_path)
    config = write_json(
        tmp_path / "c.json",
        {
            "auths": {
                "acr.example": {"auth": b64("00000000-0000:"), "identitytoken": "refresh-tok"},
                "tok.example": {"registrytoken": "access-tok"},
            }
        },
    )
    store = env.store(config)
    assert store.get("acr.example") == Credential(
        "00000000-0000", "", identity_token="refresh-tok", source=str(config)
    )
    assert store.get("tok.example") == Credential(registry_token="access-tok", source=str(config))


def test_empty_entry_hands_over_to_the_next_file(tmp_path: Path) -> None:
    env = Env(tmp_path)
    # docker login with a credsStore leaves {} behind in auths.
    first = write_json(tmp_path / "a.json", {"auths": {"r.example": {}}})
    second = write_json(tmp_path / "b.json", auths(("r.example", "u", "p")))
    assert env.store(first, second).get("r.example").username == "u"


# -- bad files and entries --------------------------------------------------------------------


@pytest.mark.parametrize("content", ["", "   \n\t\n"])
def test_empty_file_means_no_credentials(tmp_path: Path, content: str) -> None:
    env = Env(tmp_path)
    empty = tmp_path / "empty.json"
    empty.write_text(content)
    good = write_json(tmp_path / "good.json", auths(("r.example", "u", "p")))
    assert env.store(empty).get("r.example").is_anonymous
    assert env.store(empty, good).get("r.example").username == "u"


@pytest.mark.parametrize(
    "content",
    [
        '{"auths": {"r.example": {"auth": "' + SECRET + '"}',
        SECRET,
        "\xff\xfe" + SECRET,
    ],
)
def test_corrupt_file_is_an_error_naming_the_file_not_its_content(
    tmp_path: Path, content: str
) -> None:
    env = Env(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_bytes(content.encode("latin-1"))
    with pytest.raises(CredentialError) as caught:
        env.store(bad).get("r.example")
    assert str(bad) in str(caught.value)
    assert "JSON" in str(caught.value)
    assert SECRET not in str(caught.value)
    assert SECRET not in str(caught.value.hint)


@pytest.mark.parametrize("content", ["[]", '"text"', "42", "null"])
def test_file_that_is_not_an_object_is_an_error(tmp_path: Path, content: str) -> None:
    env = Env(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(CredentialError, match="not a JSON object") as caught:
        env.store(bad).get("r.example")
    assert str(bad) in str(caught.value)


def test_unreadable_path_is_an_error(tmp_path: Path) -> None:
    env = Env(tmp_path)
    directory = tmp_path / "config-dir"
    directory.mkdir()
    with pytest.raises(CredentialError, match="cannot read") as caught:
        env.store(directory).get("r.example")
    assert str(directory) in str(caught.value)


def test_auths_that_is_not_an_object_is_an_error(tmp_path: Path) -> None:
    env = Env(tmp_path)
    bad = write_json(tmp_path / "c.json", {"auths": ["r.example"]})
    with pytest.raises(CredentialError, match='"auths"') as caught:
        env.store(bad).get("r.example")
    assert str(bad) in str(caught.value)


BAD_ENTRIES: dict[str, Any] = {
    "notbase64.example": {"auth": "!!" + SECRET + "!!"},
    "nocolon.example": {"auth": b64("user" + SECRET)},
    "notutf8.example": {"auth": base64.b64encode(b"u:\xff\xfe" + SECRET.encode()).decode()},
    "passwordtype.example": {"username": "u", "password": 12345},
    "authtype.example": {"auth": [SECRET]},
    "tokentype.example": {"identitytoken": {"t": SECRET}},
    "entrytype.example": SECRET,
}


@pytest.mark.parametrize("registry", sorted(BAD_ENTRIES))
def test_bad_entry_fails_only_for_its_registry(tmp_path: Path, registry: str) -> None:
    env = Env(tmp_path)
    config = write_json(
        tmp_path / "c.json",
        {"auths": {**BAD_ENTRIES, "good.example": {"auth": b64("good:pw")}}},
    )
    store = env.store(config)
    assert store.get("good.example").username == "good"
    assert store.get("absent.example").is_anonymous
    with pytest.raises(CredentialError) as caught:
        store.get(registry)
    message = str(caught.value)
    assert registry in message
    assert str(config) in message
    assert SECRET not in message
    assert SECRET not in str(caught.value.hint)


def test_bad_legacy_entry_fails_for_its_host(tmp_path: Path) -> None:
    env = Env(tmp_path)
    config = write_json(tmp_path / "c.json", {"auths": {"https://r.example/v1/": {"auth": "%%"}}})
    with pytest.raises(CredentialError, match="base64") as caught:
        env.store(config).get("r.example")
    assert "r.example" in str(caught.value)


def test_auth_with_line_breaks_is_read_as_go_reads_it(tmp_path: Path) -> None:
    env = Env(tmp_path)
    encoded = b64("user:" + "p" * 60)
    folded = encoded[:40] + "\n" + encoded[40:]
    config = write_json(tmp_path / "c.json", {"auths": {"r.example": {"auth": folded}}})
    assert env.store(config).get("r.example").password == "p" * 60


# -- credential helpers: get ------------------------------------------------------------------


def test_cred_helper_answers(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={"r.example": ["helper-user", "helper-pw"]})
    config = write_json(
        tmp_path / "c.json",
        {"credHelpers": {"r.example": "fake"}, **auths(("r.example", "file-user", "p"))},
    )
    cred = env.store(config).get("r.example")
    assert cred == Credential("helper-user", "helper-pw", source="docker-credential-fake")
    assert env.helper_calls() == [{"action": "get", "stdin": "r.example"}]


def test_creds_store_answers_when_no_cred_helper_matches(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={"r.example": ["store-user", "store-pw"]})
    env.script("other", "#!/bin/sh\nexit 9\n")
    config = write_json(
        tmp_path / "c.json", {"credsStore": "fake", "credHelpers": {"elsewhere.example": "other"}}
    )
    assert env.store(config).get("r.example").username == "store-user"


def test_cred_helper_wins_over_creds_store(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={"r.example": ["per-registry", "pw"]})
    env.script("broken", "#!/bin/sh\nexit 9\n")
    config = write_json(
        tmp_path / "c.json", {"credsStore": "broken", "credHelpers": {"r.example": "fake"}}
    )
    assert env.store(config).get("r.example").username == "per-registry"


def test_empty_cred_helper_opts_out_of_creds_store(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.script("broken", "#!/bin/sh\nexit 9\n")
    config = write_json(
        tmp_path / "c.json",
        {
            "credsStore": "broken",
            "credHelpers": {"r.example": ""},
            **auths(("r.example", "file-user", "p")),
        },
    )
    assert env.store(config).get("r.example").username == "file-user"


def test_docker_hub_goes_to_the_helper_as_the_index_server(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={DOCKER_HUB_SERVER: ["hub", "pw"]})
    write_json(env.docker_config, {"credsStore": "fake"})
    assert env.store().get("docker.io").username == "hub"
    assert env.helper_calls() == [{"action": "get", "stdin": DOCKER_HUB_SERVER}]


def test_helper_token_username_means_identity_token(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={"r.example": ["<token>", "refresh-token"]})
    config = write_json(tmp_path / "c.json", {"credsStore": "fake"})
    assert env.store(config).get("r.example") == Credential(
        identity_token="refresh-token", source="docker-credential-fake"
    )


def test_helper_not_found_falls_back_to_auths_of_the_same_file(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={})
    config = write_json(
        tmp_path / "c.json", {"credsStore": "fake", **auths(("r.example", "file-user", "p"))}
    )
    cred = env.store(config).get("r.example")
    assert cred == Credential("file-user", "p", source=str(config))
    assert [call["action"] for call in env.helper_calls()] == ["get"]


def test_helper_not_found_falls_back_to_the_next_file(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={"other.example": ["x", "y"]})
    first = write_json(tmp_path / "a.json", {"credHelpers": {"r.example": "fake"}})
    write_json(env.docker_config, auths(("r.example", "docker-user", "p")))
    assert env.store(first).get("r.example").username == "docker-user"


def test_helper_not_found_on_stderr_counts_too(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.script("quiet", "#!/bin/sh\necho 'Credentials not found' >&2\nexit 1\n")
    config = write_json(tmp_path / "c.json", {"credsStore": "quiet"})
    assert env.store(config).get("r.example").is_anonymous


def test_missing_helper_binary(tmp_path: Path) -> None:
    env = Env(tmp_path)
    config = write_json(
        tmp_path / "c.json",
        {"credsStore": "orascp-test-absent", **auths(("r.example", "u", "p"))},
    )
    with pytest.raises(CredentialError, match="not installed") as caught:
        env.store(config).get("r.example")
    assert "docker-credential-orascp-test-absent" in str(caught.value)
    assert str(config) in str(caught.value)


def test_helper_that_is_not_executable_is_missing(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.script("noexec", FAKE_HELPER, executable=False)
    config = write_json(tmp_path / "c.json", {"credsStore": "noexec"})
    with pytest.raises(CredentialError, match="docker-credential-noexec"):
        env.store(config).get("r.example")


def test_failing_helper_reports_exit_status_and_stderr_but_not_stdout(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.script(
        "failing",
        f"#!/bin/sh\necho '{STDOUT_SECRET}'\necho 'keychain is locked' >&2\nexit 3\n",
    )
    config = write_json(tmp_path / "c.json", {"credsStore": "failing"})
    with pytest.raises(CredentialError) as caught:
        env.store(config).get("r.example")
    message = str(caught.value)
    assert "docker-credential-failing" in message
    assert "exit status 3" in message
    assert "keychain is locked" in message
    assert STDOUT_SECRET not in message
    assert STDOUT_SECRET not in str(caught.value.hint)


def test_failing_helper_stderr_is_trimmed_to_one_line(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.script("noisy", '#!/bin/sh\nfor i in $(seq 500); do echo "line $i" >&2; done\nexit 1\n')
    config = write_json(tmp_path / "c.json", {"credsStore": "noisy"})
    with pytest.raises(CredentialError) as caught:
        env.store(config).get("r.example")
    message = str(caught.value)
    assert "\n" not in message
    assert "line 1 line 2" in message
    assert "line 500" not in message
    assert len(message) < 400


def test_helper_timeout(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.script("slow", "#!/bin/sh\nexec sleep 30\n")
    config = write_json(tmp_path / "c.json", {"credsStore": "slow"})
    started = time.monotonic()
    with pytest.raises(CredentialError) as caught:
        env.store(config, timeout=0.3).get("r.example")
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "docker-credential-slow" in message
    assert "did not answer" in message
    assert "0.3 seconds" in message


def test_helper_printing_non_json(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.script("garbled", f"#!/bin/sh\necho 'password={STDOUT_SECRET} is not json'\n")
    config = write_json(tmp_path / "c.json", {"credsStore": "garbled"})
    with pytest.raises(CredentialError, match="not JSON") as caught:
        env.store(config).get("r.example")
    assert "docker-credential-garbled" in str(caught.value)
    assert STDOUT_SECRET not in str(caught.value)
    assert STDOUT_SECRET not in str(caught.value.hint)


@pytest.mark.parametrize(
    "answer",
    [f'["{STDOUT_SECRET}"]', f'{{"Username": 7, "Secret": "{STDOUT_SECRET}"}}', '{"Secret": [1]}'],
)
def test_helper_printing_json_that_is_not_a_credential(tmp_path: Path, answer: str) -> None:
    env = Env(tmp_path)
    env.script("odd", f"#!/bin/sh\necho '{answer}'\n")
    config = write_json(tmp_path / "c.json", {"credsStore": "odd"})
    with pytest.raises(CredentialError, match="not a credential") as caught:
        env.store(config).get("r.example")
    assert STDOUT_SECRET not in str(caught.value)


def test_helper_answering_nothing_hands_over_to_auths(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.script(
        "empty", '#!/bin/sh\necho \'{"ServerURL": "r.example", "Username": "", "Secret": ""}\'\n'
    )
    config = write_json(
        tmp_path / "c.json", {"credsStore": "empty", **auths(("r.example", "file-user", "p"))}
    )
    assert env.store(config).get("r.example").username == "file-user"


@pytest.mark.parametrize("name", ["../../bin/sh", "a/b", "", " x"])
def test_helper_names_cannot_be_paths(tmp_path: Path, name: str) -> None:
    env = Env(tmp_path)
    config = write_json(tmp_path / "c.json", {"credHelpers": {"r.example": name or "/"}})
    with pytest.raises(CredentialError, match="not valid") as caught:
        env.store(config).get("r.example")
    assert str(config) in str(caught.value)


def test_bad_helper_config_types(tmp_path: Path) -> None:
    env = Env(tmp_path)
    store_type = write_json(tmp_path / "a.json", {"credsStore": ["fake"]})
    helper_type = write_json(tmp_path / "b.json", {"credHelpers": {"r.example": 1}})
    with pytest.raises(CredentialError, match="credsStore"):
        env.store(store_type).get("r.example")
    with pytest.raises(CredentialError, match="credHelpers"):
        env.store(helper_type).get("r.example")
    # The bad credHelpers entry is for r.example only.
    assert env.store(helper_type).get("other.example").is_anonymous


def test_the_same_file_named_twice_is_read_once(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={})
    write_json(env.docker_config, {"credsStore": "fake"})
    assert env.store(env.docker_config, env.docker_config).get("r.example").is_anonymous
    assert len(env.helper_calls()) == 1


def test_answers_are_cached_per_server(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={DOCKER_HUB_SERVER: ["hub", "pw"]})
    write_json(env.docker_config, {"credsStore": "fake"})
    store = env.store()
    assert store.get("docker.io").username == "hub"
    assert store.get("registry-1.docker.io").username == "hub"
    assert len(env.helper_calls()) == 1


# -- store and erase in auths -----------------------------------------------------------------


def test_store_creates_the_docker_config_with_mode_0600(tmp_path: Path) -> None:
    env = Env(tmp_path)
    store = env.store()
    where = store.store("localhost:5000", Credential("alice", SECRET, source="command line"))
    assert where == str(env.docker_config)
    assert stat.S_IMODE(env.docker_config.stat().st_mode) == 0o600
    assert read_json(env.docker_config) == {
        "auths": {"localhost:5000": {"auth": b64(f"alice:{SECRET}")}}
    }
    assert [p.name for p in env.docker_config.parent.iterdir()] == ["config.json"]
    assert env.store().get("localhost:5000") == Credential(
        "alice", SECRET, source=str(env.docker_config)
    )


def test_store_goes_to_the_first_explicit_path(tmp_path: Path) -> None:
    env = Env(tmp_path)
    first, second = tmp_path / "new" / "first.json", tmp_path / "second.json"
    where = env.store(first, second).store("r.example", Credential("u", "p"))
    assert where == str(first)
    assert read_json(first)["auths"]["r.example"] == {"auth": b64("u:p")}
    assert not second.exists()
    assert not env.docker_config.exists()


def test_store_and_erase_keep_every_other_key(tmp_path: Path) -> None:
    env = Env(tmp_path)
    original: dict[str, Any] = {
        "psFormat": "table {{.ID}}",
        "auths": {
            "other.example": {"auth": b64("o:p")},
            "https://r.example/v1/": {"auth": b64("old:legacy")},
        },
        "credHelpers": {"gcr.io": "gcloud"},
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
    }
    write_json(env.docker_config, original)
    env.docker_config.chmod(0o644)
    store = env.store()
    assert store.get("r.example").username == "old"

    store.store("r.example", Credential("new", "pw"))
    after_store = read_json(env.docker_config)
    assert list(after_store) == list(original)
    assert after_store["auths"] == {**original["auths"], "r.example": {"auth": b64("new:pw")}}
    assert {k: v for k, v in after_store.items() if k != "auths"} == {
        k: v for k, v in original.items() if k != "auths"
    }
    assert stat.S_IMODE(env.docker_config.stat().st_mode) == 0o600
    # The cached answer was dropped: get sees the new credential.
    assert store.get("r.example").username == "new"

    assert store.erase("r.example") is True
    after_erase = read_json(env.docker_config)
    # The legacy key for the same host went too; everything else stayed.
    assert after_erase == {**original, "auths": {"other.example": {"auth": b64("o:p")}}}
    assert store.get("r.example").is_anonymous
    assert store.erase("r.example") is False
    assert read_json(env.docker_config) == after_erase


def test_erase_without_a_config_file_creates_nothing(tmp_path: Path) -> None:
    env = Env(tmp_path)
    assert env.store().erase("r.example") is False
    assert not env.docker_config.exists()
    assert not env.docker_config.parent.exists()


def test_store_and_erase_docker_hub(tmp_path: Path) -> None:
    env = Env(tmp_path)
    store = env.store()
    store.store("docker.io", Credential("hub", "pw"))
    assert list(read_json(env.docker_config)["auths"]) == [DOCKER_HUB_SERVER]
    assert env.store().get("registry-1.docker.io").username == "hub"
    assert store.erase("index.docker.io") is True
    assert read_json(env.docker_config)["auths"] == {}


def test_store_identity_and_registry_tokens(tmp_path: Path) -> None:
    env = Env(tmp_path)
    store = env.store()
    store.store("id.example", Credential(username="u", identity_token="refresh-" + SECRET))
    store.store("rt.example", Credential(registry_token="access-" + SECRET))
    assert read_json(env.docker_config)["auths"] == {
        "id.example": {"identitytoken": "refresh-" + SECRET},
        "rt.example": {"registrytoken": "access-" + SECRET},
    }
    reread = env.store()
    assert reread.get("id.example").identity_token == "refresh-" + SECRET
    assert reread.get("rt.example").registry_token == "access-" + SECRET


def test_store_refuses_nothing_and_unreadable_usernames(tmp_path: Path) -> None:
    env = Env(tmp_path)
    with pytest.raises(CredentialError, match="no credentials"):
        env.store().store("r.example", Credential(source="command line"))
    with pytest.raises(CredentialError, match="colon") as caught:
        env.store().store("r.example", Credential("a:b", SECRET))
    assert SECRET not in str(caught.value)
    assert not env.docker_config.exists()


def test_store_into_a_corrupt_file_changes_nothing(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.docker_config.parent.mkdir(parents=True)
    env.docker_config.write_text("{not json")
    with pytest.raises(CredentialError, match="not valid JSON"):
        env.store().store("r.example", Credential("u", SECRET))
    with pytest.raises(CredentialError, match="not valid JSON"):
        env.store().erase("r.example")
    assert env.docker_config.read_text() == "{not json"
    assert [p.name for p in env.docker_config.parent.iterdir()] == ["config.json"]


def test_store_into_an_empty_file(tmp_path: Path) -> None:
    env = Env(tmp_path)
    config = tmp_path / "c.json"
    config.write_text("\n")
    env.store(config).store("r.example", Credential("u", "p"))
    assert read_json(config) == {"auths": {"r.example": {"auth": b64("u:p")}}}


def test_store_writes_through_a_symlink(tmp_path: Path) -> None:
    env = Env(tmp_path)
    real = write_json(tmp_path / "dotfiles" / "config.json", {"psFormat": "x"})
    env.docker_config.parent.mkdir(parents=True)
    env.docker_config.symlink_to(real)
    env.store().store("r.example", Credential("u", "p"))
    assert env.docker_config.is_symlink()
    assert read_json(real) == {"psFormat": "x", "auths": {"r.example": {"auth": b64("u:p")}}}


# -- store and erase through helpers ----------------------------------------------------------


def test_store_and_erase_through_creds_store(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper()
    config_doc = {"credsStore": "fake", "auths": {"other.example": {"auth": b64("o:p")}}}
    write_json(env.docker_config, config_doc)
    store = env.store()
    assert store.get("r.example").is_anonymous

    assert store.store("r.example", Credential("alice", SECRET)) == "docker-credential-fake"
    assert read_json(env.docker_config) == config_doc
    assert env.helper_db_content() == {"r.example": ["alice", SECRET]}
    stored = env.helper_calls()[-1]
    assert stored["action"] == "store"
    assert json.loads(stored["stdin"]) == {
        "ServerURL": "r.example",
        "Username": "alice",
        "Secret": SECRET,
    }
    assert store.get("r.example") == Credential("alice", SECRET, source="docker-credential-fake")

    assert store.erase("r.example") is True
    assert env.helper_calls()[-1] == {"action": "erase", "stdin": "r.example"}
    assert env.helper_db_content() == {}
    assert store.get("r.example").is_anonymous
    assert store.erase("r.example") is False
    assert read_json(env.docker_config) == config_doc


def test_store_identity_token_through_a_cred_helper(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper()
    config = write_json(tmp_path / "c.json", {"credHelpers": {"r.example": "fake"}})
    store = env.store(config)
    assert store.store("r.example", Credential(identity_token="refresh")) == (
        "docker-credential-fake"
    )
    assert json.loads(env.helper_calls()[-1]["stdin"]) == {
        "ServerURL": "r.example",
        "Username": "<token>",
        "Secret": "refresh",
    }
    assert env.store(config).get("r.example") == Credential(
        identity_token="refresh", source="docker-credential-fake"
    )


def test_store_to_another_registry_skips_the_cred_helper(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper()
    config = write_json(tmp_path / "c.json", {"credHelpers": {"r.example": "fake"}})
    assert env.store(config).store("plain.example", Credential("u", "p")) == str(config)
    assert env.helper_calls() == []
    assert read_json(config)["auths"] == {"plain.example": {"auth": b64("u:p")}}


def test_erase_through_a_helper_also_removes_auths_entries(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper(db={})
    write_json(
        env.docker_config,
        {"credsStore": "fake", **auths(("http://r.example", "stale", "p"))},
    )
    store = env.store()
    assert store.get("r.example").username == "stale"
    assert store.erase("r.example") is True
    assert env.helper_calls()[-1]["action"] == "erase"
    assert read_json(env.docker_config) == {"credsStore": "fake", "auths": {}}
    assert store.get("r.example").is_anonymous


def test_failing_helper_store_does_not_echo_the_secret(tmp_path: Path) -> None:
    env = Env(tmp_path)
    # The helper puts its stdin (which holds the secret) on stderr, then fails.
    env.script("echoing", "#!/bin/sh\ncat >&2\nexit 4\n")
    write_json(env.docker_config, {"credsStore": "echoing"})
    with pytest.raises(CredentialError) as caught:
        env.store().store("r.example", Credential("alice", SECRET))
    message = str(caught.value)
    assert "docker-credential-echoing store failed with exit status 4" in message
    assert "alice" in message
    assert SECRET not in message


def test_registry_token_cannot_go_to_a_helper(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.fake_helper()
    write_json(env.docker_config, {"credsStore": "fake"})
    with pytest.raises(CredentialError, match="registry token") as caught:
        env.store().store("r.example", Credential(registry_token=SECRET))
    assert SECRET not in str(caught.value)
    assert env.helper_calls() == []

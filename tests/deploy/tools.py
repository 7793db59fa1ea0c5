"""Where the offline checkers of the deployment files are, and how the tests run them: the one
place every test of tests/deploy finds them.

`infra/deploy_tools.sh` (`make deploy-tools`) installs them. A test that needs a missing one
fails, naming the command to run: a missing checker must never pass as a skipped check.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / ".local"
KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "production")
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "infra" / "Dockerfile"
INSTALL = "run `make deploy-tools` (bash infra/deploy_tools.sh)"

Document = dict[str, Any]
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's when PyYAML has it


def _missing(what: str) -> None:
    pytest.fail(f"{what} is missing: {INSTALL}", pytrace=False)


def _installed(path: Path) -> Path:
    if not path.is_file():
        _missing(str(path.relative_to(ROOT)))
    return path


def kustomize() -> Path:
    return _installed(LOCAL / "bin" / "kustomize")


def kubeconform() -> Path:
    return _installed(LOCAL / "bin" / "kubeconform")


def kubernetes_schemas() -> Path:
    """The folder of Kubernetes schemas (one file per kind, and their shared definitions)."""
    folder = LOCAL / "kubernetes-schemas"
    _installed(folder / "stamp.json")
    return folder


def kubernetes_version() -> str:
    """The Kubernetes version those schemas describe (the pin of infra/deploy_tools.sh)."""
    version: str = json.loads((kubernetes_schemas() / "stamp.json").read_text())["kubernetes"]
    return version


def compose_schema() -> dict[str, Any]:
    """The Compose specification's JSON schema."""
    schema: dict[str, Any] = json.loads(
        _installed(LOCAL / "compose-schema" / "compose-spec.json").read_text())
    return schema


def promtool() -> Path:
    """Debian's promtool (package prometheus), for deploy/prometheus's tests."""
    found = shutil.which("promtool")
    if found is None:
        _missing("promtool")
    return Path(str(found))


def run(*command: str | Path, cwd: Path = ROOT, stdin: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def build(overlay: Path) -> subprocess.CompletedProcess[str]:
    """`kustomize build` of one overlay folder, as it is (it may fail)."""
    return run(kustomize(), "build", overlay)


def validate(rendered: str) -> subprocess.CompletedProcess[str]:
    """kubeconform over rendered manifests, strictly (no field a schema does not declare, no
    duplicated key), against the local schemas only: a kind without a schema is an error, and
    nothing is fetched."""
    location = f"{kubernetes_schemas()}/{{{{ .ResourceKind }}}}{{{{ .KindSuffix }}}}.json"
    return run(kubeconform(), "-strict", "-summary", "-kubernetes-version",
               kubernetes_version(), "-schema-location", location, "-", stdin=rendered)


def throwaway_secrets(production: Path) -> str:
    """A secrets.env for `production` (an overlay folder): the lines of its
    secrets.env.example made valid with obviously fake values (its USER and PASSWORD
    placeholders filled in, an empty secret or key given a throwaway_value; a line a process
    accepts empty, SMTP_URL, stays so), so that the rendered Secret loads as settings."""
    lines = (production / "secrets.env.example").read_text().splitlines()
    secrets = []
    for line in lines:
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        value = _PLACEHOLDER.sub(lambda match: _FAKE[match.group()], value)
        if not value and key.endswith(("_SECRET", "_ENCRYPTION_KEY")):
            value = throwaway_value(key)
        secrets.append(f"{key}={value}\n")
    return "".join(secrets)


def throwaway_value(name: str) -> str:
    """An obviously fake value the settings accept for the secret or password `name`: base64
    of 32 bytes for an encryption key, else 48 URL-safe characters (long enough for every
    secret, and usable inside a URL)."""
    if name.endswith("_ENCRYPTION_KEY"):
        return base64.b64encode(b"throwaway-key".ljust(32, b"0")).decode()
    return f"throwaway-{name.lower().replace('_', '-')}-".ljust(48, "0")


_FAKE = {"USER": "throwaway", "PASSWORD": "throwaway-password"}
_PLACEHOLDER = re.compile(r"\b(?:USER|PASSWORD)\b")


@contextmanager
def kubernetes_copy() -> Iterator[Path]:
    """A scratch copy of deploy/kubernetes, to write files the real folder must not hold."""
    with tempfile.TemporaryDirectory(prefix="kubernetes-") as scratch:
        copy = Path(scratch) / "kubernetes"
        shutil.copytree(KUBERNETES, copy, ignore=shutil.ignore_patterns("secrets.env"))
        yield copy


@cache
def rendered(overlay: str) -> str:
    """An overlay rendered as an operator would: production with throwaway secrets (in a copy,
    since the real folder must not hold secrets.env), dev as it is."""
    with kubernetes_copy() as copy:
        folder = copy / "overlays" / overlay
        if overlay == "production":
            (folder / "secrets.env").write_text(throwaway_secrets(folder))
        result = build(folder)
    if result.returncode != 0:
        pytest.fail(f"kustomize build overlays/{overlay} failed:\n{result.stderr}",
                    pytrace=False)
    return result.stdout


@cache
def objects(overlay: str) -> tuple[Document, ...]:
    """The rendered objects (parsed once: the tests read, never change them)."""
    return tuple(document for document in yaml.load_all(rendered(overlay), Loader=LOADER)
                 if document)


def of_kind(overlay: str, kind: str) -> list[Document]:
    return [document for document in objects(overlay) if document["kind"] == kind]

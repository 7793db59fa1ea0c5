"""Kubernetes JSON schemas for kubeconform, offline: taken from the `kubernetes-validate` wheel.

    python infra/kubernetes_schemas.py extract WHEEL KUBERNETES_VERSION OUT
    python infra/kubernetes_schemas.py is-current OUT PACKAGE_VERSION KUBERNETES_VERSION

The wheel ships, per Kubernetes version, one schema file per kind and a shared
`_definitions.json`. Each kind's schema has an `$id` on kubernetes.io and points into the
shared file with `/api/_definitions.json#/$defs/...`, a reference kubeconform resolves against
that `$id`, so it would fetch https://kubernetes.io/api/_definitions.json (and fail offline).
This script copies the `-local-strict` variant of VERSION (every object closed with
`additionalProperties: false`, which is what kubeconform's `-strict` means) into OUT with the
`$id`s removed and every such reference made relative (`_definitions.json#/$defs/...`), so it
resolves to the file beside it. OUT is replaced whole, through a temporary sibling, so an
interrupted run never leaves half a folder behind; OUT/stamp.json records what it holds
(`is-current` exits 0 when that is what the pins ask for; tests/deploy/tools.py reads the
Kubernetes version from it).
"""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

ABSOLUTE_REF = "/api/_definitions.json#"
RELATIVE_REF = "_definitions.json#"


STAMP = "stamp.json"


def stamp(package_version: str, kubernetes_version: str) -> dict[str, str]:
    return {"kubernetes-validate": package_version, "kubernetes": kubernetes_version}


def is_current(out: Path, package_version: str, kubernetes_version: str) -> bool:
    try:
        recorded = json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return bool(recorded == stamp(package_version, kubernetes_version))


def localised(node: Any) -> Any:
    """`node` with no `$id` and every reference into the shared definitions made relative."""
    if isinstance(node, dict):
        return {key: (RELATIVE_REF + value[len(ABSOLUTE_REF):]
                      if key == "$ref" and isinstance(value, str)
                      and value.startswith(ABSOLUTE_REF) else localised(value))
                for key, value in node.items() if key != "$id"}
    if isinstance(node, list):
        return [localised(item) for item in node]
    return node


def extract(wheel: Path, kubernetes_version: str, out: Path) -> int:
    prefix = f"kubernetes_validate/kubernetes-json-schema/v{kubernetes_version}-local-strict/"
    package_version = wheel.name.split("-")[1]
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    written = 0
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.startswith(prefix) or not name.endswith(".json"):
                continue
            schema = localised(json.loads(archive.read(name)))
            (staging / name[len(prefix):]).write_text(json.dumps(schema))
            written += 1
    if not (staging / "_definitions.json").is_file():
        shutil.rmtree(staging)
        raise SystemExit(f"{wheel.name} has no schemas for Kubernetes {kubernetes_version}")
    (staging / STAMP).write_text(json.dumps(stamp(package_version, kubernetes_version)))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return written


def main(argv: list[str]) -> None:
    match argv:
        case ["extract", wheel, version, out]:
            count = extract(Path(wheel), version, Path(out))
            print(f"[deploy-tools] {count} Kubernetes {version} schemas in {out}")
        case ["is-current", out, package_version, version]:
            sys.exit(0 if is_current(Path(out), package_version, version) else 1)
        case _:
            raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

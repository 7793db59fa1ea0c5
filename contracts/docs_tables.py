"""The parts of `docs/` that are generated from the route table (`contracts.routes.ROUTES`).

A generated part sits between two marker lines in a Markdown file:

    <!-- BEGIN GENERATED: endpoints:auth -->
    ...
    <!-- END GENERATED: endpoints:auth -->

`python -m contracts.docs_tables` (`make docs`) rewrites every such block from the table as it
is now; `--check` only reports stale blocks (exit status 1). tests/unit/test_docs.py fails
while a block differs from what this module renders, so the endpoint tables of docs/api.md
cannot drift from the routes the gateway serves. Everything outside the markers is prose that
people keep current.

Blocks:
- `endpoints:<tag>` (docs/api.md): one table per route tag, in the table's order: method,
  path, who may call, the request's fields (the schemas' wire names; `name?` is optional),
  success status, the route's own error statuses (the implicit ones are listed in
  docs/api.md section 2) and the summary;
- `reserved-prefixes` (docs/api.md): `contracts.routes.RESERVED_PREFIXES`;
- `operations` (docs/architecture.md): which process answers each route, over which RPC
  queue and operation.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable
from pathlib import Path

from contracts.names import SERVICES
from contracts.routes import RESERVED_PREFIXES, ROUTES, Access, Route
from contracts.validation import RequestModel

ROOT = Path(__file__).resolve().parent.parent
API_DOC = Path("docs/api.md")
ARCHITECTURE_DOC = Path("docs/architecture.md")

_BLOCK = re.compile(
    r"(?P<begin><!-- BEGIN GENERATED: (?P<name>[a-z0-9:-]+) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<end><!-- END GENERATED: (?P=name) -->)",
    re.DOTALL,
)

WHO = {
    Access.PUBLIC: "public",
    Access.AUTHENTICATED: "Bearer, any role",
    Access.DEVELOPER: "Bearer, developer or admin",
    Access.ADMIN: "Bearer, admin only",
    Access.ALERT_SECRET: "`X-Alert-Secret`",
}


class DocsError(RuntimeError):
    """A document lacks a block this module renders, or has one it does not know."""


def _fields(model: type[RequestModel]) -> str:
    """The wire names of a model's fields in declared order, `?` marking optional ones."""
    names = [(field.alias or name) + ("" if field.is_required() else "?")
             for name, field in model.model_fields.items()]
    return ", ".join(names)


def _request(route: Route) -> str:
    parts = []
    if route.query is not None:
        parts.append(f"query `{_fields(route.query)}`")
    if route.body is not None:
        fields = "{ " + _fields(route.body) + " }"
        if route.body_max_items is not None:
            parts.append(f"body `[{fields}]`, at most {route.body_max_items} items")
        else:
            parts.append(f"body `{fields}`")
    return "; ".join(parts) or "none"


def _row(route: Route) -> str:
    errors = ", ".join(str(status) for status in route.errors) or "none"
    cells = (f"`{route.method}`", f"`{route.path}`", WHO[route.access], _request(route),
             str(route.success_status), errors, route.summary)
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def endpoint_table(routes: tuple[Route, ...]) -> str:
    lines = ["| Method | Path | Who | Request | Success | Other errors | What it does |",
             "|---|---|---|---|---|---|---|"]
    lines += [_row(route) for route in routes]
    return "\n".join(lines) + "\n"


def tags(routes: tuple[Route, ...] = ROUTES) -> list[str]:
    """Each route's first tag, in the table's order, once each."""
    seen: list[str] = []
    for route in routes:
        tag = route.tags[0] if route.tags else "other"
        if tag not in seen:
            seen.append(tag)
    return seen


def reserved_prefixes() -> str:
    return ", ".join(f"`{prefix}`" for prefix in RESERVED_PREFIXES) + "\n"


def operations_table(routes: tuple[Route, ...] = ROUTES) -> str:
    lines = ["| Route | Answered by | RPC queue | Operation |", "|---|---|---|---|"]
    for route in routes:
        if route.service is None:
            lines.append(f"| `{route.template}` | gateway | none | `{route.operation.name}` |")
        else:
            info = SERVICES[route.service]
            lines.append(f"| `{route.template}` | `{route.service.value}_svc` | "
                         f"`{info.rpc_queue}` | `{route.operation.name}` |")
    return "\n".join(lines) + "\n"


def renderers(routes: tuple[Route, ...] = ROUTES) -> dict[Path, dict[str, Callable[[], str]]]:
    """Every generated block, by document (relative to the repository) and block name."""
    api: dict[str, Callable[[], str]] = {}
    for tag in tags(routes):
        tagged = tuple(r for r in routes if (r.tags[0] if r.tags else "other") == tag)
        api[f"endpoints:{tag}"] = functools.partial(endpoint_table, tagged)
    api["reserved-prefixes"] = reserved_prefixes
    return {API_DOC: api, ARCHITECTURE_DOC: {"operations": lambda: operations_table(routes)}}


def regenerate(text: str, blocks: dict[str, Callable[[], str]], *, where: str) -> str:
    """`text` with every block rendered afresh. Raises DocsError when a block is missing or
    unknown: a new route tag needs its markers placed by hand, once."""
    found = [match["name"] for match in _BLOCK.finditer(text)]
    missing = [name for name in blocks if name not in found]
    unknown = [name for name in found if name not in blocks]
    problems = []
    if missing:
        problems.append("no markers for " + ", ".join(missing) + " (add '<!-- BEGIN "
                        "GENERATED: <name> -->' and '<!-- END GENERATED: <name> -->' lines "
                        "where the table belongs)")
    if unknown:
        problems.append("unknown generated blocks " + ", ".join(unknown))
    if problems:
        raise DocsError(f"{where}: " + "; ".join(problems))
    return _BLOCK.sub(lambda m: m["begin"] + blocks[m["name"]]() + m["end"], text)


def stale(root: Path = ROOT) -> dict[Path, list[str]]:
    """The blocks that differ from what the route table renders now, by document."""
    out: dict[Path, list[str]] = {}
    for document, blocks in renderers().items():
        text = (root / document).read_text(encoding="utf-8")
        fresh = regenerate(text, blocks, where=str(document))
        current = {m["name"]: m["body"] for m in _BLOCK.finditer(text)}
        wanted = {m["name"]: m["body"] for m in _BLOCK.finditer(fresh)}
        names = [name for name in wanted if current.get(name) != wanted[name]]
        if names:
            out[document] = names
    return out


def write(root: Path = ROOT) -> list[Path]:
    """Rewrite every document's generated blocks; returns the documents that changed."""
    changed = []
    for document, blocks in renderers().items():
        path = root / document
        text = path.read_text(encoding="utf-8")
        fresh = regenerate(text, blocks, where=str(document))
        if fresh != text:
            path.write_text(fresh, encoding="utf-8")
            changed.append(document)
    return changed


def main(argv: list[str]) -> int:
    try:
        if "--check" in argv:
            found = stale()
            for document, names in found.items():
                print(f"{document} is stale ({', '.join(names)}): run make docs")
            return 1 if found else 0
        for document in write():
            print(f"rewrote the generated parts of {document}")
    except DocsError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

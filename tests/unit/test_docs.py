"""The documentation in `docs/` is the contract the code keeps: its generated tables follow the
route table, every error code is listed, every cited section exists, and nothing refers to
documents outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from contracts import docs_tables
from contracts.errors import ApiError
from contracts.routes import ROUTES

ROOT = docs_tables.ROOT
DOCS = {"api": ROOT / docs_tables.API_DOC, "architecture": ROOT / docs_tables.ARCHITECTURE_DOC}

# Written so that this file does not match itself: the names of the documents that lived
# outside the repository before docs/ (case-sensitive, as the before-stop hook greps them).
OUTSIDE_DOCS = re.compile(rb"(\.\./shared|\b" + b"API" + rb"\.md\b|\b" + b"DESIGN" + rb"\.md\b)")

_NUMBERS = r"\d+(?:\.\d+)?(?:(?:,\s*|\s+and\s+|\s+or\s+)\d+(?:\.\d+)?)*"
# "docs/api.md section 7.2", "docs/architecture.md sections 5 and 7", "docs/api.md 6.3"
CITATION = re.compile(
    r"docs/(?P<doc>api|architecture)\.md(?:'s)?\s+(?:(?:sections?|§)\s*)?(?P<numbers>"
    + _NUMBERS + r")")
# inside a document, "section 13.1" refers to the document itself
BARE = re.compile(r"(?<![\w/.])(?:sections?|§)\s*(?P<numbers>" + _NUMBERS + r")")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.MULTILINE)


def test_generated_parts_are_current():
    stale = docs_tables.stale()
    assert not stale, "; ".join(
        f"{document} is stale ({', '.join(names)}): run make docs"
        for document, names in stale.items())


def test_every_route_is_in_the_api_doc():
    text = DOCS["api"].read_text(encoding="utf-8")
    missing = [route.template for route in ROUTES
               if f"| `{route.method}` | `{route.path}` |" not in text]
    assert not missing, f"docs/api.md lacks {missing}: run make docs"


def test_a_missing_block_is_reported_not_dropped():
    with pytest.raises(docs_tables.DocsError, match=r"no markers for .*endpoints:auth"):
        docs_tables.regenerate("no markers here\n", docs_tables.renderers()[
            docs_tables.API_DOC], where="docs/api.md")


def _error_classes(cls: type[ApiError] = ApiError) -> list[type[ApiError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_error_classes(sub)]
    return found


def test_every_error_code_is_in_the_envelope_table():
    """docs/api.md section 2 has a row `| <status> | `<code>` |` for each error the code
    raises."""
    text = DOCS["api"].read_text(encoding="utf-8")
    section = text[text.index("## 2. Error envelope"):text.index("## 3. ")]
    missing = sorted({f"{cls.status} {cls.code}" for cls in _error_classes()
                      if f"| {cls.status} | `{cls.code}` |" not in section})
    assert not missing, f"docs/api.md section 2 does not list {missing}"


def _repository_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / name for name in listed.decode().split("\0") if name]


def _sections(document: str) -> set[str]:
    return set(HEADING.findall(DOCS[document].read_text(encoding="utf-8")))


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


def test_nothing_refers_to_documents_outside_docs():
    found = []
    for path in _repository_files():
        if not path.is_file():
            continue  # deleted, not yet staged
        for number, line in enumerate(path.read_bytes().splitlines(), 1):
            if OUTSIDE_DOCS.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    assert not found, ("these lines refer to documents outside the repository; cite "
                       "docs/api.md or docs/architecture.md instead: " + ", ".join(found))


def test_cited_sections_exist():
    sections = {name: _sections(name) for name in DOCS}
    broken = []
    for path in _repository_files():
        if not path.is_file() or path.suffix not in {".py", ".md", ".sql", ".js", ".sh",
                                                       ".yaml", ".yml", ".toml", ""}:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        cited = [(m["doc"], m["numbers"], m.start()) for m in CITATION.finditer(text)]
        own = next((name for name, doc in DOCS.items() if doc == path), None)
        if own is not None:  # a document's references to its own sections
            for match in BARE.finditer(text):
                before = text[max(0, match.start() - 40):match.start()]
                if re.search(r"(RFC \d+|docs/\w+\.md)\s*$", before):
                    continue  # another document's section
                cited.append((own, match["numbers"], match.start()))
        for document, numbers, offset in cited:
            for number in _numbers(numbers):
                if number not in sections[document]:
                    line = text.count("\n", 0, offset) + 1
                    broken.append(f"{path.relative_to(ROOT)}:{line} cites "
                                  f"docs/{document}.md section {number}")
    assert not broken, "no such section: " + ", ".join(broken)

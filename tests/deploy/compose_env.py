"""What Docker Compose makes of compose.yaml's `${...}` with a given .env, without Docker: its
.env format and its interpolation, as the Compose specification describes them (`$$`,
`$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`,
`${NAME:+replacement}`, `${NAME+replacement}`), applied to the values of the loaded file, never
its comments. A form it does not know (a nested `${...}` inside a default) fails rather than
pass unresolved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_REFERENCE = re.compile(r"\$\$|\$\{(?P<braced>[^}]*)\}|\$(?P<name>[A-Za-z_]\w*)")
_BRACED = re.compile(r"(?P<name>[A-Za-z_]\w*)(?:(?P<operator>:?[-?+])(?P<argument>.*))?",
                     re.DOTALL)


class InterpolationError(ValueError):
    """What compose stops with: a required variable unset or empty, or a form not known."""


def read_dotenv(text: str) -> dict[str, str]:
    """KEY=VALUE lines; `#` starts a comment line, or an inline one after a space in an
    unquoted value; a value in matching quotes is taken as it is inside them."""
    variables = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, separator, value = line.partition("=")
        if not separator:
            raise InterpolationError(f"not KEY=VALUE: {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        else:
            value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
        variables[key.strip()] = value
    return variables


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group() == "$$":
            return "$"
        if match["name"]:
            return variables.get(match["name"], "")
        braced = _BRACED.fullmatch(match["braced"])
        if braced is None or "${" in (braced["argument"] or ""):
            raise InterpolationError(f"unsupported interpolation {match.group()!r}")
        name, operator, argument = braced["name"], braced["operator"], braced["argument"]
        value = variables.get(name)
        # with a colon, an empty value counts as unset
        unset = value is None or (value == "" and operator is not None
                                  and operator.startswith(":"))
        if operator is None:
            return value or ""
        if operator.endswith("-"):
            return argument if unset else str(value)
        if operator.endswith("?"):
            if unset:
                raise InterpolationError(f"{name}: {argument}")
            return str(value)
        return "" if unset else argument  # `+`: the replacement when set

    return _REFERENCE.sub(substitute, text)


def interpolated(document: Any, variables: Mapping[str, str]) -> Any:
    """A loaded compose file with every string value interpolated (keys stay as they are)."""
    if isinstance(document, str):
        return interpolate(document, variables)
    if isinstance(document, dict):
        return {key: interpolated(value, variables) for key, value in document.items()}
    if isinstance(document, list):
        return [interpolated(item, variables) for item in document]
    return document


def required_variables(document: Any) -> set[str]:
    """The variables a loaded compose file refuses to run without (`${NAME:?...}`,
    `${NAME?...}` in its values)."""
    if isinstance(document, str):
        return set(re.findall(r"\$\{([A-Za-z_]\w*):?\?", document))
    if isinstance(document, dict):
        return set().union(*map(required_variables, document.values()))
    if isinstance(document, list):
        return set().union(*map(required_variables, document))
    return set()

"""kubectl's JSONPath templates (``-o jsonpath=...``, ``--sort-by``), on jsonpath-ng (pure).

A template is text with actions in braces, as kubectl accepts them: ``{.status.phase}``,
``{.items[*].metadata.name}``, ``{range .items[*]}{.metadata.name}{"\\n"}{end}``,
``{.items[?(@.status.phase=="Failed")].metadata.name}``,
``{.metadata.labels.steprun\\.dev/workflow}``.
Several results of one expression are joined by spaces; strings print bare, objects and lists
as compact JSON; a missing field prints nothing (kubectl's --allow-missing-template-keys).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


class TemplateError(ValueError):
    """The template cannot be parsed; the message says where."""


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Expr:
    path: str


@dataclass(frozen=True)
class _Range:
    path: str
    body: tuple[_Node, ...]


_Node = _Text | _Expr | _Range
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
# A path segment that jsonpath-ng cannot read bare: escaped dots (steprun\.dev/x) or characters
# such as / and - in label keys.
_SEGMENT = re.compile(r"(?<=\.)((?:[^.\[\]()'\"\\=!<>&|@,:\s]|\\\.)+)")
_BARE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$|^\*$")


def _actions(template: str) -> list[tuple[str, str]]:
    """(kind, text) pairs: "text" outside braces, "action" inside (quotes respected)."""
    out: list[tuple[str, str]] = []
    i, start = 0, 0
    while i < len(template):
        if template[i] != "{":
            i += 1
            continue
        if i > start:
            out.append(("text", template[start:i]))
        j, quote = i + 1, ""
        while j < len(template) and (quote or template[j] != "}"):
            char = template[j]
            if quote and char == "\\":
                j += 1
            elif char in "\"'":
                quote = "" if quote == char else (quote or char)
            j += 1
        if j >= len(template):
            raise TemplateError(f"unclosed action in jsonpath template at {template[i:]!r}")
        out.append(("action", template[i + 1 : j].strip()))
        i = start = j + 1
    if start < len(template):
        out.append(("text", template[start:]))
    return out


def _literal(action: str) -> str | None:
    if len(action) >= 2 and action[0] == action[-1] and action[0] in "\"'":
        body, text, i = action[1:-1], [], 0
        while i < len(body):
            if body[i] == "\\" and i + 1 < len(body):
                text.append(_ESCAPES.get(body[i + 1], body[i + 1]))
                i += 2
            else:
                text.append(body[i])
                i += 1
        return "".join(text)
    return None


def parse_template(template: str) -> tuple[_Node, ...]:
    stack: list[tuple[str, list[_Node]]] = [("", [])]
    for kind, text in _actions(template):
        if kind == "text":
            stack[-1][1].append(_Text(text))
        elif (literal := _literal(text)) is not None:
            stack[-1][1].append(_Text(literal))
        elif text.startswith("range "):
            stack.append((text[len("range ") :].strip(), []))
        elif text == "end":
            if len(stack) == 1:
                raise TemplateError("{end} without {range} in jsonpath template")
            path, body = stack.pop()
            stack[-1][1].append(_Range(path, tuple(body)))
        elif text:
            stack[-1][1].append(_Expr(text))
    if len(stack) > 1:
        raise TemplateError("{range} without {end} in jsonpath template")
    return tuple(stack[0][1])


def _jsonpath_expression(path: str) -> str:
    """kubectl's ``.a.b`` / ``@.a`` / ``$.a`` as a jsonpath-ng expression rooted at ``$``."""
    path = path.strip()
    if path.startswith("@"):
        path = "$" + path[1:]
    elif path.startswith("."):
        path = "$" + path
    elif not path.startswith("$"):
        path = "$." + path

    def quote(match: re.Match[str]) -> str:
        segment = match.group(1)
        if _BARE.match(segment):
            return segment
        return "'" + segment.replace("\\.", ".") + "'"

    return _SEGMENT.sub(quote, path)


@lru_cache(maxsize=128)
def _compiled(path: str) -> Any:
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
    from jsonpath_ng.ext.parser import parse

    expression = _jsonpath_expression(path)
    try:
        return parse(expression)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
        raise TemplateError(f"cannot parse jsonpath {path!r}: {exc}") from exc


def find(path: str, document: Any) -> list[Any]:
    """Every value ``path`` selects in ``document`` (empty when nothing matches)."""
    return [match.value for match in _compiled(path).find(document)]


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _render(nodes: Sequence[_Node], document: Any) -> str:
    out: list[str] = []
    for node in nodes:
        match node:
            case _Text(text=text):
                out.append(text)
            case _Expr(path=path):
                out.append(" ".join(format_value(v) for v in find(path, document)))
            case _Range(path=path, body=body):
                for item in find(path, document):
                    out.append(_render(body, item))
    return "".join(out)


def render(template: str, document: Any) -> str:
    """The template applied to ``document``, as ``kubectl get -o jsonpath=`` prints it."""
    return _render(parse_template(template), document)


def sort_key(path: str) -> Any:
    """A sort key for ``--sort-by PATH`` (``.a.b`` or ``{.a.b}``): missing values first,
    numbers by value, anything else by text."""
    bare = path.strip()
    if bare.startswith("{") and bare.endswith("}"):
        bare = bare[1:-1]
    _compiled(bare)  # fail on a bad path before sorting anything

    def key(document: Any) -> tuple[int, float, str]:
        values = find(bare, document)
        if not values or values[0] is None:
            return (0, 0.0, "")
        first = values[0]
        if isinstance(first, bool) or not isinstance(first, int | float):
            return (2, 0.0, format_value(first))
        return (1, float(first), "")

    return key

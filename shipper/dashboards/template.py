"""SLS alert content templates ("new" syntax), rendered the way SLS documents for the subset shipper uses.

Covered: `{{ alert.a.b }}` and `{{ alert.a["key"] }}` lookups, and the filters `to_json`, `quote` and
`default(value)`. Per Alibaba Cloud "Variables in new alert templates": a missing variable is an empty string
(so `{{ alert.nope | quote }}` gives `""`; `default` replaces it), an object (list or map) renders as a JSON
string. `quote` gives the JSON string literal of the value,
quotes included, as SLS's default custom-webhook template relies on (`"status": {{ alert.status | quote }}`).
Control flow (`{% ... %}`) and the other built-in functions are not implemented: TemplateError says so, so
validate can never pass a template this renderer did not really render.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Mapping

from shipper.dashboards.rules import TEMPLATE_FILTERS


class TemplateError(ValueError):
    pass


@dataclass(frozen=True)
class Expression:
    text: str                                   # as written between {{ and }}
    path: tuple                                 # ("alert", "fire_results"), keys and indexes
    filters: tuple[tuple[str, tuple], ...]      # ((name, literal arguments), ...)


class _Missing:
    """A variable SLS does not have: an empty string, unless `default` replaces it."""


_MISSING = _Missing()
_BLOCK = re.compile(r"\{\{(.*?)\}\}|\{%|\{#", re.DOTALL)
_PATH_START = re.compile(r"\s*([A-Za-z_]\w*)")
_PATH_STEP = re.compile(r"\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*(\"(?:[^\"\\]|\\.)*\"|'[^']*'|\d+)\s*\])")
_FILTER = re.compile(r"\s*\|\s*([A-Za-z_]\w*)\s*(\((.*?)\))?", re.DOTALL)


def _parse(text: str) -> Expression:
    match = _PATH_START.match(text)
    if match is None:
        raise TemplateError(f"{{{{{text}}}}}: expected a variable such as alert.status")
    path, at = [match.group(1)], match.end()
    while (step := _PATH_STEP.match(text, at)) is not None:
        path.append(step.group(1) if step.group(1) is not None else ast.literal_eval(step.group(2)))
        at = step.end()
    filters = []
    while (found := _FILTER.match(text, at)) is not None:
        name, arguments = found.group(1), ()
        if found.group(2):
            try:
                arguments = ast.literal_eval(f"({found.group(3)},)") if found.group(3).strip() else ()
            except (ValueError, SyntaxError):
                raise TemplateError(f"{{{{{text}}}}}: the arguments of {name} must be literals") from None
        filters.append((name, arguments))
        at = found.end()
    if text[at:].strip():
        raise TemplateError(f"{{{{{text}}}}}: cannot read {text[at:].strip()!r}")
    return Expression(text.strip(), tuple(path), tuple(filters))


def expressions(content: str) -> list[Expression]:
    """Every {{ ... }} of a template; TemplateError on syntax this module does not cover."""
    found = []
    for match in _BLOCK.finditer(content):
        if match.group(1) is None:
            raise TemplateError(f"{match.group()} blocks (control flow, comments) are not supported by "
                                "shipper's renderer")
        found.append(_parse(match.group(1)))
    return found


def _lookup(context: Mapping, path: tuple):
    value = context
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


def _apply(expression: Expression, value):
    for name, arguments in expression.filters:
        if name == "default":
            if len(arguments) != 1:
                raise TemplateError(f"{{{{ {expression.text} }}}}: default takes one value")
            value = arguments[0] if value is _MISSING else value
        elif name not in ("to_json", "quote"):
            known = "an SLS filter shipper's renderer does not implement" if name in TEMPLATE_FILTERS else \
                "not an SLS template filter"
            raise TemplateError(f"{{{{ {expression.text} }}}}: {name} is {known}")
        elif arguments:
            raise TemplateError(f"{{{{ {expression.text} }}}}: {name} takes no arguments")
        else:  # a missing variable is an empty string to every filter but default
            value = "" if value is _MISSING else value
            value = json.dumps(value if name == "to_json" else _text(value), ensure_ascii=False)
    return value


def _text(value) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, (bool, list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def render(content: str, context: Mapping) -> str:
    """content with every {{ ... }} replaced from context (e.g. {"alert": {...}})."""
    expressions(content)  # refuses what is not covered before anything is rendered

    def value(match: re.Match) -> str:
        expression = _parse(match.group(1))
        result = _apply(expression, _lookup(context, expression.path))
        return "" if result is _MISSING else _text(result)

    return _BLOCK.sub(value, content)


def render_template(content: str, alert: Mapping) -> str:
    """A content template rendered for one alert (the SLS variables under `alert.`)."""
    return render(content, {"alert": alert})

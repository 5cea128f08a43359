"""Components that plug in: every source, sink and hook registers one `Component` from its own module.

The config loader, `shipper run` and `shipper check` read only this table (as Cloud Custodian's registries
and Vector's component descriptions do), so adding a component touches its module and one line of
`BUILTIN`. A component's settings class is a frozen dataclass whose defaults are the documented defaults;
its optional `validate()` raises `Invalid` naming the key, and the loader adds the file and the table.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

SOURCE, SINK, HOOK = "source", "sink", "hook"

# The modules that register the built-in components; importing one registers it.
BUILTIN = (
    "shipper.sources.simulate",
    "shipper.sources.http",
    "shipper.sources.mns",
    "shipper.sinks.sqlite",
    "shipper.sinks.sls",
    "shipper.hooks.restart",
    "shipper.hooks.lb_drain",
)


class Invalid(ValueError):
    """A setting's value is wrong; the message starts with the key, e.g. "`listen` must be host:port"."""


@dataclass(frozen=True)
class Finding:
    """One line of `shipper check`."""
    level: str  # "ok", "warn" (works, but look), "FAIL" (shipper run would not work)
    text: str


@dataclass(frozen=True)
class Component:
    kind: str                      # SOURCE, SINK or HOOK
    type: str                      # `type = "…"` of a [[sources]] / [[sinks]] table; a hook's [hooks.<type>]
    settings: type                 # frozen dataclass of its settings
    build: Callable[..., Any]      # (settings, runtime) -> the running component
    check: Callable[..., list] | None = None  # (settings, config) -> [Finding]: reach what run will reach
    permissions: tuple[str, ...] = ()         # RAM actions it calls, for `shipper check` to print


_components: dict[tuple[str, str], Component] = {}


def register(component: Component) -> Component:
    key = (component.kind, component.type)
    if key in _components and _components[key] is not component:
        raise ValueError(f"a {component.kind} of type {component.type!r} is already registered")
    _components[key] = component
    return component


def unregister(kind: str, type_: str) -> None:
    _components.pop((kind, type_), None)


def _load_builtin() -> None:
    for module in BUILTIN:
        importlib.import_module(module)


def of_kind(kind: str) -> dict[str, Component]:
    """The registered components of one kind by type, built-ins first, in registration order."""
    _load_builtin()
    return {t: c for (k, t), c in _components.items() if k == kind}


def for_settings(settings: object) -> Component:
    """The component a settings object configures."""
    _load_builtin()
    for component in _components.values():
        if type(settings) is component.settings:
            return component
    raise LookupError(f"no component is registered for {type(settings).__name__}")


def positive(settings: object, *names: str) -> None:
    """Raise Invalid for the first of `names` that is not greater than 0."""
    for name in names:
        value = getattr(settings, name)
        if value <= 0:
            raise Invalid(f"`{name}` must be greater than 0, got {value!r}")

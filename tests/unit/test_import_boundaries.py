"""The rules of ARCHITECTURE.md ("Boundaries"), read from the source's import statements.

Each rule is checked on the whole package, and each is shown to catch a forbidden import added to a module
(the checker runs on the module's real source plus one line)."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "shipper"
SDKS = ("mns", "aliyun", "aliyunsdkcore")
# The delivery core: sources, sinks, enrichers and listeners reach it through its interfaces only.
CORE = ("shipper.pipeline",)
CORE_MAY_NOT_IMPORT = ("shipper.hooks", "shipper.instances", "shipper.sources", "shipper.sinks", "shipper.cloud",
                       "shipper.runner", "shipper.cli", "shipper.read", "shipper.dashboards")
# Pure modules: decoding, normalization, guards, query parsing, values. No SDK, however indirectly.
PURE = ("shipper.decode", "shipper.normalize", "shipper.events", "shipper.times", "shipper.hooks.guards",
        "shipper.instances.model", "shipper.instances.stop_cause", "shipper.trail", "shipper.audit.reconcile", "shipper.query.parser", "shipper.registry", "shipper.cloud.backoff")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, name: str) -> set[str]:
    """Every module `source` imports (absolute names; `from a import b` counts a and a.b)."""
    found = set()
    package = name if name.count(".") == 0 else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def graph(extra: dict[str, str] | None = None) -> dict[str, set[str]]:
    """module -> modules it imports, for every module of the package (sources overridden by `extra`)."""
    sources = {module_name(p): p.read_text() for p in PACKAGE.rglob("*.py")}
    sources.update(extra or {})
    return {name: imports(text, name) for name, text in sources.items()}


def under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def closure(g: dict[str, set[str]], start: str) -> set[str]:
    """Everything `start` imports, directly or through other modules of the package."""
    seen, todo = set(), [start]
    while todo:
        for target in g.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                if target in g:
                    todo.append(target)
    return seen


def violations(g: dict[str, set[str]]) -> list[str]:
    found = []
    for name, targets in g.items():
        if not under(name, ("shipper.cloud",)):
            found += [f"{name} imports the SDK {t} outside shipper/cloud" for t in targets if under(t, SDKS)]
        if name in CORE:
            found += [f"the delivery core {name} imports {t}" for t in targets if under(t, CORE_MAY_NOT_IMPORT)]
    for name in PURE:
        found += [f"the pure module {name} reaches the SDK {t}" for t in closure(g, name) if under(t, SDKS)]
    return sorted(set(found))


def test_the_package_keeps_its_boundaries():
    assert violations(graph()) == []


@pytest.mark.parametrize("module, line, expected", [
    ("shipper.pipeline", "from shipper.hooks import INLINE", "the delivery core shipper.pipeline imports shipper.hooks"),
    ("shipper.pipeline", "from shipper.instances.registry import InstanceRegistry", "imports shipper.instances.registry"),
    ("shipper.hooks.guards", "from shipper.cloud.openapi import OpenApi", "the pure module shipper.hooks.guards reaches"),
    ("shipper.normalize", "import aliyunsdkcore", "shipper.normalize imports the SDK aliyunsdkcore outside"),
    ("shipper.sinks.sls", "from aliyun.log import LogClient", "shipper.sinks.sls imports the SDK aliyun.log"),
])
def test_a_forbidden_import_added_to_a_module_is_caught(module, line, expected):
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    changed = graph({module: path.read_text() + "\n" + line + "\n"})
    assert any(expected in v for v in violations(changed)), violations(changed)

"""The house rules of docs/architecture.md, checked on the source of the package."""

from __future__ import annotations

import ast
import pathlib
from typing import Final

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "genesis_logging"

#: The delivery flow, upstream first: caller -> handler -> pipeline -> queue / worker ->
#: deliverer / replayer -> transport / spool. A module imports only downstream of itself.
FLOW: Final = {
    "handler": 0,
    "_pipeline": 1,
    "_queue": 2,
    "_worker": 2,
    "_deliver": 3,
    "_replay": 3,
    "transport": 4,
    "spool": 4,
}
#: Shared values and pure functions: anybody may import them; they import only each other.
LEAVES: Final = {
    "_batch",
    "backend",
    "_codec",
    "_convert",
    "_columns",
    "_config",
    "_faults",
    "_guard",
    "_inserts",
    "_local_index",
    "_policies",
    "_readonly",
    "_warnings",
    "_values",
    "_version",
    "context",
    "ddl",
    "errors",
    "formatter",
    "schema",
    "settings",
    "signals",
}


#: On top: they may import anything in the package; nothing in the flow or the leaves
#: imports them.
APPLICATIONS: Final = {
    "__init__",
    "__main__",
    "_chdb",
    "asgi",
    "attach",
    "cli",
    "cli._analysis",
    "cli._common",
    "cli._mcp",
    "cli._ops",
    "cli._output",
    "cli._read",
    "cli._report",
    "cli._run",
    "cli._spool",
    "configure",
    "local_store",
    "loop",
    "operations",
    "pytest_plugin",
    "report",
    "runner",
    "store",
}


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(p for p in parts if p != "__init__") or "__init__"] = path
    return found


def imported_modules(name: str, path: pathlib.Path) -> set[str]:
    """Package modules imported by ``name`` (relative and absolute imports alike)."""
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    known = set(modules())
    result = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            elif node.module and node.module.startswith("genesis_logging"):
                target = node.module.removeprefix("genesis_logging").lstrip(".")
            else:
                continue
            candidates = [target] + [f"{target}.{alias.name}".lstrip(".") for alias in node.names]
            result |= {c for c in candidates if c in known}
    return result - {name}


def body_lines(node: ast.AST) -> int:
    """Lines of a class or function body, its docstring left out."""
    body = list(node.body)  # type: ignore[attr-defined]
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if not body:
        return 0
    return int(body[-1].end_lineno) - body[0].lineno + 1  # type: ignore[operator]


class TestSizes:
    """Small pieces: no class over 300 lines, no function over 60."""

    @pytest.mark.parametrize("name", sorted(modules()))
    def test_no_long_class_or_function(self, name: str) -> None:
        tree = ast.parse(modules()[name].read_text())
        too_long = []
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and body_lines(node) > 300:
                too_long.append((node.name, body_lines(node)))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and body_lines(node) > 60:
                too_long.append((node.name, body_lines(node)))
        assert not too_long


class TestFlow:
    """The flow runs one way."""

    def test_every_module_is_placed_once(self) -> None:
        """A new module must be placed, or it would escape the rule below."""
        groups = [set(FLOW), set(LEAVES), set(APPLICATIONS)]
        placed = set().union(*groups)
        assert set(modules()) - placed == set(), (
            "place the new module in FLOW, LEAVES or APPLICATIONS"
        )
        assert placed - set(modules()) == set(), "a placed module no longer exists"
        assert sum(len(g) for g in groups) == len(placed), "a module is placed twice"

    @pytest.mark.parametrize("name", sorted(set(FLOW) | LEAVES))
    def test_imports_go_downstream_only(self, name: str) -> None:
        imports = imported_modules(name, modules()[name])
        if name in LEAVES:
            assert imports <= LEAVES, imports - LEAVES
        else:
            upstream = {
                other
                for other in imports - LEAVES
                if other not in FLOW or FLOW[other] <= FLOW[name]
            }
            assert not upstream

    def test_the_checker_sees_imports(self) -> None:
        """The rule above would catch the old spool -> formatter import."""
        assert imported_modules("_pipeline", modules()["_pipeline"]) >= {"_queue", "_worker"}
        assert "spool" in imported_modules("_deliver", modules()["_deliver"])
        assert "_replay" in imported_modules("cli._spool", modules()["cli._spool"])

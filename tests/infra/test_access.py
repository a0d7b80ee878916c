"""ACCESS (infra/access.py) against what the functions' code does: every topic a function's code can
publish to is one it may publish to, and no other (issue 7 item 9: reconcile re-dispatches through
the coordinator's start logic, which also requests a consolidation, and had no publisher role there:
a 403 in production that no mock could see)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from batchline.topology import FUNCTIONS
from infra.access import ACCESS

ROOT = Path(__file__).resolve().parents[2]


def _calls(node: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            if isinstance(f, ast.Name):
                out.add(f.id)
            elif isinstance(f, ast.Attribute):
                out.add(f.attr)
    return out


def _published(node: ast.AST) -> set[str]:
    """Topic keys of `clients.publish("key", ...)` and `clients.topic_path("key")` calls."""
    return {n.args[0].value for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("publish", "topic_path") and n.args
            and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)}


def _definitions() -> dict[str, tuple[set[str], set[str]]]:
    """function name -> (names it calls, topics it publishes to), over the archived package."""
    defs: dict[str, tuple[set[str], set[str]]] = {}
    for path in (ROOT / "batchline").glob("*.py"):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                calls, topics = defs.setdefault(node.name, (set(), set()))
                calls |= _calls(node)
                topics |= _published(node)
    return defs


def topics_published_by(function: str) -> set[str]:
    """Everything reachable (by name) from functions/<function>/main.py. Over-approximates (names are
    not resolved to modules), which can only make the test stricter."""
    main = ast.parse((ROOT / "functions" / function / "main.py").read_text())
    alias = {a.asname: a.name for n in ast.walk(main) if isinstance(n, ast.ImportFrom) for a in n.names if a.asname}
    defs = _definitions()
    todo, seen, topics = {alias.get(c, c) for c in _calls(main)}, set(), set()
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        calls, published = defs[name]
        topics |= published
        todo |= calls
    return topics


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_publish_exactly_where_access_allows(function):
    assert topics_published_by(function) == set(ACCESS[function].publishes_to)


def test_reconcile_reaches_the_consolidation_topic():
    assert "consolidation" in topics_published_by("reconcile")
    assert "consolidation" in ACCESS["reconcile"].publishes_to


def test_the_analysis_sees_a_publish_it_is_shown(tmp_path):
    """The call graph is not vacuous: a call that publishes is found."""
    tree = ast.parse('def f(clients):\n    clients.publish("summary", b"")\n')
    assert _published(tree) == {"summary"}

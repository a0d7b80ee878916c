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
            elif isinstance(f, ast.Subscript) and isinstance(f.value, ast.Name):  # _ACTIONS[action](...)
                out.add(f.value.id)
        elif isinstance(n, ast.Dict):  # a dispatch table ({"replay_dead_letters": _replay}) calls its values
            out |= {v.id for v in n.values if isinstance(v, ast.Name)}
    return out


def _published(node: ast.AST) -> set[str]:
    """Topic keys of `clients.publish("key", ...)`, `clients.publish_all("key", ...)` and
    `clients.topic_path("key")` calls."""
    return {n.args[0].value for n in ast.walk(node)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and n.func.attr in ("publish", "publish_all", "topic_path") and n.args
            and isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str)}


# Publishes whose topic key is a variable, and the keys it can hold: `dlq replay` republishes a
# completions or control dead letter to its source topic (work and consolidation dead letters are
# repaired instead, batchline/flows/replay.py). test_dynamic_publishes_are_known keeps this list whole.
DYNAMIC_PUBLISHES: dict[str, set[str]] = {"replay_dead_letters": {"completions", "control"}}


def _dynamic(node: ast.AST) -> bool:
    """Whether `node` has a `clients.publish(<not a string literal>, ...)` call."""
    return any(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "publish"
               and isinstance(n.func.value, ast.Name) and n.func.value.id == "clients" and n.args
               and not (isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str))
               for n in ast.walk(node))


def _definitions() -> dict[str, tuple[set[str], set[str]]]:
    """function name -> (names it calls, topics it publishes to), over the archived package."""
    defs: dict[str, tuple[set[str], set[str]]] = {}
    for path in _shipped():
        tree = ast.parse(path.read_text())
        for node in tree.body:  # a module-level dispatch table is "defined" as the names it holds
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                defs.setdefault(node.targets[0].id, (set(), set()))[0].update(_calls(node.value))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                calls, topics = defs.setdefault(node.name, (set(), set()))
                calls |= _calls(node)
                topics |= _published(node) | (DYNAMIC_PUBLISHES.get(node.name, set()) if _dynamic(node) else set())
    return defs


def _shipped() -> list:
    """The batchline modules a function archive ships (not the operator CLI, not the local stack)."""
    return [p for p in sorted((ROOT / "batchline").rglob("*.py"))
            if p.relative_to(ROOT / "batchline").parts[0] not in ("ops", "local")]


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


def test_dynamic_publishes_are_known():
    """Every publish with a variable topic key is one DYNAMIC_PUBLISHES accounts for."""
    found = {node.name for path in _shipped()
             for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _dynamic(node)
             and not any(_dynamic(inner) for inner in node.body if isinstance(inner, (ast.FunctionDef,
                                                                                       ast.AsyncFunctionDef)))}
    assert found == set(DYNAMIC_PUBLISHES)


def test_coordinator_replays_through_completions_and_control():
    assert {"completions", "control"} <= topics_published_by("coordinator")


def test_dead_letter_keys_are_the_topics_that_dead_letter():
    from batchline.domain.control_requests import REPLAY_SOURCES
    from batchline.topology import build_topology
    from infra.access import DEAD_LETTER_KEYS, OPERATOR_ACCESS

    # the dead letters `dlq list` and `dlq replay` read: each a topic that dead-letters
    assert tuple(DEAD_LETTER_KEYS) == tuple(REPLAY_SOURCES)
    topology = build_topology("x")
    assert set(DEAD_LETTER_KEYS) <= {t.key for t in topology.topics if any(s.dead_letter for s in t.subscriptions)}
    assert ACCESS["coordinator"].reads_dead_letters == DEAD_LETTER_KEYS == OPERATOR_ACCESS.reads_dead_letters
    assert OPERATOR_ACCESS.invokes == () and OPERATOR_ACCESS.publishes_to == ("control",)


def test_reconcile_reaches_the_consolidation_topic():
    assert "consolidation" in topics_published_by("reconcile")
    assert "consolidation" in ACCESS["reconcile"].publishes_to


def test_the_analysis_sees_a_publish_it_is_shown(tmp_path):
    """The call graph is not vacuous: a call that publishes is found."""
    tree = ast.parse('def f(clients):\n    clients.publish("summary", b"")\n')
    assert _published(tree) == {"summary"}
    chunk = ast.parse('def dispatch(clients):\n    clients.publish_all("work", [])\n')  # a start's fan-out
    assert _published(chunk) == {"work"}

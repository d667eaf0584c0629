"""unprior's modules import each other without cycles (a package and its own submodules excepted)."""

import ast
from pathlib import Path

import unprior

ROOT = Path(unprior.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Module -> the unprior modules it imports, at top level or inside functions."""
    files = {_module_name(f): f for f in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, f in files.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in files and d != name and not _related(name, d)}
    return graph


def _related(a: str, b: str) -> bool:
    """A package and a module inside it (``unprior.models.backends`` loads ``.hf`` on demand, which imports it)."""
    return a.startswith(b + ".") or b.startswith(a + ".")


def _cycle_from(start: str, graph: dict[str, set[str]]) -> list[str] | None:
    stack, path = [(start, iter(sorted(graph[start])))], [start]
    while stack:
        _, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            path.pop()
        elif child == start:
            return [*path, start]
        elif child not in path:
            stack.append((child, iter(sorted(graph[child]))))
            path.append(child)
    return None


def test_no_import_cycles():
    graph = _graph()
    cycles = [c for m in sorted(graph) if (c := _cycle_from(m, graph))]
    assert not cycles, " -> ".join(cycles[0])


def test_the_cycle_finder_finds_one():
    assert _cycle_from("a", {"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle_from("a", {"a": {"b"}, "b": set()}) is None

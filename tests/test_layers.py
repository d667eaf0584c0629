"""The package's layers (docs/architecture.md): no module imports a folder above its own or beside it. Every import
counts, function-local ones included."""

from __future__ import annotations

import ast
from pathlib import Path

import unprior

ROOT = Path(unprior.__file__).parent

# docs/architecture.md, "Layers": each folder (or top-level module) and its layer, lowest first. A module may import
# its own folder and folders of lower layers only; folders that share a layer never import each other.
LAYERS: dict[str, int] = {
    # foundation
    "config": 0, "io": 0, "guards": 0, "numerics": 0, "losses": 1,
    # components
    "perturb": 2, "formats": 2, "answers": 2, "models": 3, "forward": 4,
    # stages, in pipeline order: a stage reads the outputs (and the readers) of the stages before it
    "world": 5, "pairs": 6, "score": 7, "train": 8, "eval": 9,
    # orchestration
    "plan": 10, "pipeline": 10, "study": 11, "demo": 11, "cli": 12, "__main__": 13,
}


def unit(module: str) -> str:
    """``unprior.score.reference`` -> ``score``; ``unprior`` itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """``(line, imported module)`` for every ``import unprior...`` / ``from unprior... import`` / relative import."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("unprior.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("unprior."):
                found.append((node.lineno, target))
            elif target == "unprior":
                found += [(node.lineno, f"unprior.{a.name}") for a in node.names]
    return found


def violations() -> list[str]:
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        own = unit(module_name(path))
        if own == "":  # unprior/__init__.py: pins the CPU kernels (numerics) and imports nothing else
            continue
        if own not in LAYERS:
            bad.append(f"{path.relative_to(ROOT.parent)}: folder {own!r} has no layer in LAYERS")
            continue
        for line, target in imports(path):
            other = unit(target)
            if other == own or other not in LAYERS:
                continue
            if LAYERS[other] >= LAYERS[own]:
                bad.append(f"{path.relative_to(ROOT.parent)}:{line}: {own} (layer {LAYERS[own]}) imports {target} "
                           f"(layer {LAYERS[other]})")
    return bad


def test_every_folder_has_a_layer_and_every_import_goes_down():
    assert violations() == []


def test_the_check_sees_upward_sideways_and_local_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "unprior"
    (pkg / "models").mkdir(parents=True)
    (pkg / "score").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "__init__.py").write_text("")
    (pkg / "score" / "__init__.py").write_text("")
    (pkg / "models" / "a.py").write_text("def f():\n    from unprior.score import b\n")
    (pkg / "score" / "b.py").write_text("from ..train import c\nfrom unprior.models import a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", pkg)
    got = violations()
    assert any("models/a.py:2" in v and "unprior.score" in v for v in got)
    assert any("score/b.py:1" in v and "unprior.train" in v for v in got)
    assert not any("score/b.py:2" in v for v in got)

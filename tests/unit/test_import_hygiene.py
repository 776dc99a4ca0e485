"""Module structure of clap_ros and clap_train: no import circles (lazy imports inside functions
included) and no imports of another module's private names (``from x import _y``)."""

import ast
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ((ROOT, "clap_ros"), (ROOT / "training", "clap_train"))


def _modules() -> Dict[str, Path]:
    out = {}
    for base, pkg in PACKAGES:
        for path in (base / pkg).rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _absolute(module: str, is_package: bool, level: int, name: str) -> str:
    if level == 0:
        return name
    parts = module.split(".")
    if not is_package:
        parts = parts[:-1]
    if level > 1:
        parts = parts[: len(parts) - (level - 1)]
    return ".".join(parts + ([name] if name else []))


def _scan() -> Tuple[Dict[str, Set[str]], List[str]]:
    """Import graph between project modules, and every private-name import across modules."""
    mods = _modules()
    graph: Dict[str, Set[str]] = {m: set() for m in mods}
    private = []
    for mod, path in mods.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                graph[mod].update(a.name for a in node.names if a.name in mods and a.name != mod)
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(mod, is_package, node.level, node.module or "")
                for a in node.names:
                    full = f"{base}.{a.name}"
                    target = full if full in mods else base
                    if target in mods and target != mod:
                        graph[mod].add(target)
                    if (
                        a.name.startswith("_")
                        and not a.name.startswith("__")
                        and full not in mods
                        and base.split(".")[0] in ("clap_ros", "clap_train")
                    ):
                        private.append(
                            f"{path.relative_to(ROOT)}:{node.lineno}: from {base} import {a.name}"
                        )
    return graph, private


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_the_checker_finds_a_circle_and_a_private_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _absolute("clap_ros.eval.bag_eval", False, 1, "bag_player") == "clap_ros.eval.bag_player"
    assert _absolute("clap_train.experiments", True, 2, "pipeline") == "clap_train.pipeline"


def test_no_import_circles():
    graph, _ = _scan()
    assert len(graph) > 100  # both packages were read
    cycles = _cycles(graph)
    detail = [
        "; ".join(f"{a} -> {b}" for a in c for b in sorted(graph[a]) if b in c) for c in cycles
    ]
    assert not cycles, "import circles:\n" + "\n".join(detail)


def test_no_private_names_imported_across_modules():
    _, private = _scan()
    assert not private, "private names imported from another module:\n" + "\n".join(private)

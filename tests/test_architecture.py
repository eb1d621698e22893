"""The house stays as README's architecture section draws it: no import cycles (imports inside
functions count), no upward import between the three packages or between orchestrator's
subpackages, one import for an experiment file, and no two modules of one name."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pose_core", "orchestrator", "search_spaces")
# Lower layers never import higher ones. search_spaces uses orchestrator, which uses pose_core.
PACKAGE_LAYER = {"pose_core": 0, "orchestrator": 1, "search_spaces": 2}
# orchestrator's subpackages, lowest first; a subpackage imports only its own layer or below.
SUBPACKAGE_LAYER = {
    "study": 0, "store": 1, "data": 2, "plan": 3, "infer": 3, "report": 4, "run": 4, "cli": 5,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every project module ``name`` imports, at the top or inside a function."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def add(target: str) -> None:
        # the longest project module that the dotted name starts with
        parts = target.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in modules:
                if candidate != name:
                    found.add(candidate)
                return

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in modules else base)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_counting_imports_inside_functions() -> None:
    edges = graph()
    # A package's __init__ re-exporting its own modules is not a cycle of the design.
    edges = {m: {t for t in ts if not (t.startswith(m + ".") and m.count(".") < t.count("."))
                 and not (m.startswith(t + ".") and (REPO / t.replace(".", "/")).is_dir())}
             for m, ts in edges.items()}
    assert cycles(edges) == []


def test_no_upward_imports() -> None:
    upward = []
    for name, targets in graph().items():
        top = name.split(".")[0]
        for target in targets:
            if PACKAGE_LAYER[target.split(".")[0]] > PACKAGE_LAYER[top]:
                upward.append(f"{name} -> {target}")
            parts, tparts = name.split("."), target.split(".")
            if top == "orchestrator" == tparts[0] and len(parts) > 2 and len(tparts) > 2:
                if SUBPACKAGE_LAYER[tparts[1]] > SUBPACKAGE_LAYER[parts[1]]:
                    upward.append(f"{name} -> {target}")
    assert upward == []


def test_every_orchestrator_module_sits_in_a_known_subpackage() -> None:
    loose = [name for name in project_modules() if name.startswith("orchestrator.")
             and name.split(".")[1] not in SUBPACKAGE_LAYER]
    assert loose == []


def test_pose_core_never_imports_ray_or_the_store() -> None:
    banned = ("ray", "optuna", "pyarrow", "s3fs", "duckdb")
    offenders = []
    for name, path in project_modules().items():
        if not name.startswith("pose_core"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{name}: {n}" for n in names if n.split(".")[0] in banned]
    assert offenders == []


def test_no_two_modules_share_a_name() -> None:
    """Every module name says one thing in the whole project, experiment files included: an
    experiment file is named after its experiment (``posetune sweep kitpose``), so no library
    module takes that name (the KITPose head is ``pose_core.kitpose_head``)."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for name in project_modules():
        if name.count(".") == 0:
            continue
        leaf = name.rsplit(".", 1)[1]
        if leaf not in ("__main__",):
            by_name[leaf].append(name)
    shared = {leaf: names for leaf, names in by_name.items() if len(names) > 1}
    assert shared == {}


def test_an_experiment_file_needs_one_import() -> None:
    import orchestrator
    from orchestrator.study import experiment

    for name in ("Experiment", "Stage", "Grid", "Choice", "Cases", "LogUniform", "Uniform",
                 "IntRange"):
        assert getattr(orchestrator, name) is getattr(experiment, name)
    for path in sorted((REPO / "search_spaces").glob("[!_]*.py")):
        text = path.read_text()
        assert "from orchestrator." not in text and "import orchestrator." not in text, path.name

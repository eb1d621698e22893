"""Experiment files: the shipped ones (the ``search_spaces`` package) by name, and a user's
own file, ``path/to/my_study.py``, or ``module_or_file:ATTRIBUTE``.

Each file defines ``EXPERIMENT`` (an :class:`~orchestrator.study.experiment.Experiment`); a
shipped file's name is the experiment name used by ``posetune sweep NAME``. Importing a file
validates every axis path and value against the config dataclasses, and loading it builds its
first trial's config. A relative path resolves against the current directory, which is the
job's working directory under ``ray job submit --working-dir .``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from orchestrator.study.experiment import Experiment, expand_stage, trial_count
from orchestrator.study.trials import check_builds, variant_config

# The shipped experiments: the modules of this package, found by name (experiment files are
# loaded, never imported by orchestrator's code; they import orchestrator).
SHIPPED = "search_spaces"


def names() -> list[str]:
    """The shipped experiments' names."""
    spec = importlib.util.find_spec(SHIPPED)
    folders = list(spec.submodule_search_locations or []) if spec else []
    return sorted(m.name for m in pkgutil.iter_modules(folders) if not m.name.startswith("_"))


def shipped(name: str) -> Experiment | None:
    """The shipped experiment ``name``, or None for one defined elsewhere."""
    return load_experiment(name) if name in names() else None


def load_experiment(spec: str) -> Experiment:
    """A shipped name (``quickstart``), a file (``my_study.py``) or ``MODULE_OR_FILE:ATTR``.

    A file or module without ``:ATTR`` must define ``EXPERIMENT``, or hold exactly one
    :class:`Experiment` at module level.
    """
    if spec in names():
        module = importlib.import_module(f"{SHIPPED}.{spec}")
        experiment: Experiment = module.EXPERIMENT
        return check_builds(experiment)
    where, _, attribute = spec.rpartition(":") if _has_attribute(spec) else (spec, "", "")
    if not _is_file(where) and ":" not in spec:
        raise ValueError(
            f"unknown experiment {spec!r}: not a shipped name ({', '.join(names())}) and not a "
            f"file (relative paths resolve against {Path.cwd()}); or give MODULE:ATTRIBUTE"
        )
    module = _import_file(where) if _is_file(where) else _import_module(where)
    return check_builds(_pick(module, attribute, spec))


def _has_attribute(spec: str) -> bool:
    """``a.py:EXP`` and ``pkg.mod:EXP`` name an attribute; a Windows drive ``C:`` does not."""
    head, sep, tail = spec.rpartition(":")
    return bool(sep and head and tail.isidentifier())


def _is_file(where: str) -> bool:
    return where.endswith(".py") or Path(where).is_file()


def _import_file(where: str) -> ModuleType:
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"experiment file {where} not found (relative paths resolve "
                         f"against the current directory {Path.cwd()})")
    # A stable, unique module name: two files called study.py in different folders do not
    # replace each other in sys.modules.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    name = f"_posetune_experiment_{digest}_{path.stem}"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise ValueError(f"experiment file {path}: not importable as Python")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up here
    try:
        loader_spec.loader.exec_module(module)
    except (ValueError, OSError):  # already one line naming what to fix (a bad axis, ...)
        del sys.modules[name]
        raise
    except Exception as error:  # the file's own bug (an import, a name): one line naming it
        del sys.modules[name]
        raise ValueError(f"experiment file {path}: {type(error).__name__}: {error} "
                         "(--debug shows the traceback)") from error
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise ValueError(f"experiment module {name!r} not found: {error}") from None


def _pick(module: ModuleType, attribute: str, spec: str) -> Experiment:
    if attribute:
        value = getattr(module, attribute, None)
        if not isinstance(value, Experiment):
            raise ValueError(f"{spec}: {attribute} is not an Experiment "
                             f"(got {type(value).__name__})")
        return value
    if isinstance(getattr(module, "EXPERIMENT", None), Experiment):
        chosen: Experiment = module.EXPERIMENT
        return chosen
    found = sorted(k for k, v in vars(module).items() if isinstance(v, Experiment))
    if len(found) != 1:
        listing = f"several ({', '.join(found)})" if found else "none"
        raise ValueError(f"{spec}: defines {listing} module-level Experiment; define "
                         "EXPERIMENT = Experiment(...) or name one as FILE:ATTRIBUTE")
    picked: Experiment = getattr(module, found[0])
    return picked


def experiment_files(folder: str) -> list[Path]:
    """The experiment files among the ``*.py`` files of ``folder``, found without running
    any: a file is one when its source (parsed, not executed) assigns ``EXPERIMENT`` or calls
    ``Experiment(...)``. Other scripts, ``_``-prefixed helpers and files that do not parse
    are never imported."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"--path {folder}: not a folder")
    return sorted(p for p in root.glob("*.py")
                  if not p.name.startswith("_") and defines_experiment(p))


def defines_experiment(path: Path) -> bool:
    """Whether the file's source assigns ``EXPERIMENT`` or calls ``Experiment`` (read as
    text and parsed; never executed)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "EXPERIMENT" \
                and isinstance(node.ctx, ast.Store):
            return True
        if isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else None
            if called == "Experiment":
                return True
    return False


def datasets_of(experiment: Experiment) -> list[str]:
    """Every dataset a grid trial of the experiment reads (from the trials' full configs)."""
    names: set[str] = set()
    for stage in experiment.stages:
        specs = expand_stage(experiment, stage, seeds=1) if stage.search == "grid" else []
        configs = [variant_config(experiment, stage, s.changes, 0) for s in specs] or [
            variant_config(experiment, stage, {}, 0)
        ]
        for data in (c.data for c in configs):
            names.update(n for n in (data.base, data.test) if n)
            if data.real and data.real_count:
                names.add(data.real)
            if data.synthetic and data.synthetic_count:
                names.add(data.synthetic)
    return sorted(names)


def describe(experiment: Experiment) -> dict[str, Any]:
    stages = [{"name": s.name, "trials": trial_count(experiment, s), "search": s.search}
              for s in experiment.stages]
    return {
        "name": experiment.name,
        "description": experiment.description.strip().splitlines()[0],
        "trials": stages[-1]["trials"],  # the final stage's: the rows of its table
        "total_trials": sum(s["trials"] for s in stages),
        "stages": stages,
        "datasets": datasets_of(experiment),
        "metric": experiment.metric,
        "table": experiment.table,
    }


def describe_all(folder: str | None = None) -> list[dict[str, Any]]:
    """The shipped experiments, or those in the ``*.py`` files of ``folder``."""
    if folder is None:
        return [describe(load_experiment(name)) for name in names()]
    rows = []
    for path in experiment_files(folder):
        row = describe(load_experiment(str(path)))
        rows.append({**row, "file": str(path)})
    return rows

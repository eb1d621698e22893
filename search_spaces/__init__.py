"""The study's experiments, one small declarative file each.

Each module defines ``EXPERIMENT`` (an :class:`orchestrator.experiment.Experiment`); the
file name is the experiment name used by ``posetune sweep NAME``. Importing a module
validates every axis path and value against the config dataclasses.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from orchestrator.experiment import Experiment, expand_stage, trial_count


def names() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def load_experiment(name: str) -> Experiment:
    if name not in names():
        raise ValueError(f"unknown experiment {name!r}; shipped experiments: {', '.join(names())}")
    module = importlib.import_module(f"{__name__}.{name}")
    experiment: Experiment = module.EXPERIMENT
    return experiment


def datasets_of(experiment: Experiment) -> list[str]:
    """Every dataset a grid trial of the experiment reads (from the trials' full configs)."""
    names: set[str] = set()
    for stage in experiment.stages:
        specs = expand_stage(experiment, stage, seeds=1) if stage.search == "grid" else []
        configs = [experiment.config_for(stage, s.changes, 0) for s in specs] or [
            experiment.config_for(stage, {}, 0)
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


def describe_all() -> list[dict[str, Any]]:
    return [describe(load_experiment(name)) for name in names()]

"""The study's experiments, one small declarative file each.

Each module defines ``EXPERIMENT`` (an :class:`orchestrator.Experiment`); the file name is the
experiment name used by ``posetune sweep NAME``. The loader (shipped names and a user's own
files) is :mod:`orchestrator.study.files`, re-exported here.
"""

from orchestrator.study.files import (
    datasets_of,
    describe,
    describe_all,
    experiment_files,
    load_experiment,
    names,
)

__all__ = ["datasets_of", "describe", "describe_all", "experiment_files", "load_experiment",
           "names"]

"""orchestrator: Ray Tune + Ray Train sweeps over pose_core, Parquet results, the CLI.

An experiment file needs one import::

    from orchestrator import Cases, Choice, Experiment, Grid, IntRange, LogUniform, Stage, Uniform

The subpackages, each named after what a reader looks for: ``study`` (experiments, scales,
trial jobs), ``data`` (catalog, label formats, trial data, weights), ``plan`` (preflight, cost,
reuse, forking, halving), ``run`` (driver, stage runners, Tune, worker, callback, trackers),
``store`` (results, schema, rows, lock, query), ``report`` (tables, findings, page), ``infer``
(predict) and ``cli``.
"""

from orchestrator.study.experiment import (
    Cases,
    Choice,
    Experiment,
    Grid,
    IntRange,
    LogUniform,
    Stage,
    Uniform,
)

__all__ = ["Cases", "Choice", "Experiment", "Grid", "IntRange", "LogUniform", "Stage", "Uniform"]

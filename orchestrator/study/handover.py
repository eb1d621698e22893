"""How a stage hands its checkpoint to the next: ``"@best:STAGE"`` and ``"@match:STAGE"``.

An experiment sets ``model.weights`` (and only that path) to a stage reference:

- ``"@best:STAGE"``: the checkpoint of that earlier stage's best trial (on the
  experiment's metric and mode);
- ``"@match:STAGE"``: the checkpoint of that stage's trial with the same seed.

Its life, start to end:

1. written: :func:`orchestrator.study.experiment.validate` refuses a reference on any other
   path or of another kind when the experiment file is imported (this module sits above
   the experiment, so that one check is there);
2. planned: :func:`orchestrator.study.trials.build_job` keeps the reference as the config's
   ``model.weights`` string; the preflight does not look for it as a file (:func:`is_reference`);
3. waited for: a stage needs the stages it references as well as those it declares in
   ``depends_on`` (:func:`dependencies`); the driver does not start it after one of them
   failed or was interrupted;
4. resolved: when the stage starts, :func:`resolve_references` replaces the reference by the
   ``checkpoint_uri`` of the chosen row in the results store (an error naming the stage if it
   has no finished trial with a checkpoint); a sampled (Optuna) trial takes the weights its
   study's template was resolved to (:func:`with_template_weights`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from orchestrator.study.experiment import Experiment, Stage
from orchestrator.study.trials import TrialJob


def is_reference(value: Any) -> bool:
    """A stage reference (``@best:STAGE``, ``@match:STAGE``), not yet resolved."""
    return isinstance(value, str) and value.startswith("@")


def referenced_stages(job: TrialJob) -> set[str]:
    """The stage a job's weights reference (none, or one)."""
    weights = job.config.model.weights
    return {str(weights).split(":", 1)[1]} if is_reference(weights) else set()


def dependencies(stage: Stage, jobs: Iterable[TrialJob]) -> set[str]:
    """Stages this one needs: declared, and those its weights references name."""
    needed = set(stage.depends_on)
    for job in jobs:
        needed |= referenced_stages(job)
    return needed


def resolve_references(
    job: TrialJob, rows: list[dict[str, Any]], experiment: Experiment,
) -> TrialJob:
    """Replace ``@best:STAGE`` / ``@match:STAGE`` by the checkpoint URI of that stage's trial
    (the best one, or the one with the same seed); ``rows``: the store's latest trial rows."""
    weights = job.config.model.weights
    if not is_reference(weights):
        return job
    kind, stage = str(weights)[1:].split(":", 1)
    rows = [
        r for r in rows
        if r["experiment"] == experiment.name and r["stage"] == stage and r["status"] == "ok"
        and r["checkpoint_uri"]
    ]
    if kind == "match":
        rows = [r for r in rows if r["seed"] == job.seed]
    if not rows:
        raise RuntimeError(
            f"{job.trial_key}: model.weights={weights} but stage {stage!r} has no finished "
            "trial with a checkpoint in the results store; run that stage first"
        )
    sign = 1 if experiment.mode == "max" else -1

    def score(row: dict[str, Any]) -> float:
        value = row[experiment.metric]
        return float("-inf") if value is None else sign * value

    return with_weights(job, max(rows, key=score)["checkpoint_uri"])


def with_template_weights(job: TrialJob, template: TrialJob) -> TrialJob:
    """A sampled trial built afresh from its stage (its weights still a reference) takes the
    weights its study's template was resolved to when the stage started."""
    if not is_reference(job.config.model.weights):
        return job
    return with_weights(job, template.config.model.weights)


def with_weights(job: TrialJob, weights: str | None) -> TrialJob:
    model = dataclasses.replace(job.config.model, weights=weights)
    return dataclasses.replace(job, config=dataclasses.replace(job.config, model=model))

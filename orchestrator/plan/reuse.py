"""Study-wide trial reuse: a planned trial whose training identity equals a finished one in
the same results store, from any experiment, is not trained again.

The identity is the job digest (:attr:`orchestrator.study.trials.TrialJob.digest`), deliberately
conservative: every field of the trial config (training, data, model, evaluation: the
copied row's metrics must be the ones this trial would have measured), the catalog entries
of the datasets it reads (so the same subset digest), where its initial weights come from,
and the source of the code its training runs (``TRAINING_MODULES``, hashed by
:func:`orchestrator.study.trials.code_digest`). Any difference in any of them means a new
training.

A reused trial gets its own row for the new experiment, stage and variant, copied from the
finished one with ``reused_from`` naming it, and its epoch history; its ``checkpoint_uri``
is the original's, so later stages fine-tune from it as from a trial trained here. Only
``ok`` rows are reused (an ASHA-stopped trial did not train all its epochs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from orchestrator.store.results import ResultsStore
from orchestrator.store.schema import EpochRecord, TrialRecord
from orchestrator.study.trials import TrialJob


def finished_by_digest(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest ``ok`` row of each job digest among a store's latest trial rows (any
    experiment)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        digest = row.get("job_digest")
        if row["status"] == "ok" and digest and row.get("checkpoint_uri"):
            if digest not in out or row["ended_at"] > out[digest]["ended_at"]:
                out[digest] = row
    return out


def source_key(row: dict[str, Any]) -> str:
    return f"{row['experiment']}/{row['stage']}/{row['variant_id']}/seed={row['seed']}"


def reuse(
    jobs: list[TrialJob], rows: list[dict[str, Any]], store: ResultsStore,
    say: Callable[[str], None],
) -> list[TrialJob]:
    """Write rows for the jobs the store (whose latest trial rows are ``rows``) has already
    trained; return those still to train."""
    finished = finished_by_digest(rows)
    epochs: list[dict[str, Any]] | None = None
    todo = []
    for job in jobs:
        row = finished.get(job.digest)
        if row is None or (row["experiment"], row["stage"], row["variant_id"], row["seed"]) \
                == (job.experiment, *job.key):
            todo.append(job)
            continue
        if epochs is None:
            epochs = store.read_epochs().to_pylist()
        copy_trial(job, row, [e for e in epochs if e["trial_id"] == row["trial_id"]], store)
        say(f"[{job.experiment}/{job.stage}] {job.variant_id} seed {job.seed}: reused from "
            f"{source_key(row)} (same training identity; --no-reuse trains it again)")
    return todo


def copy_trial(job: TrialJob, row: dict[str, Any], epochs: list[dict[str, Any]],
               store: ResultsStore) -> TrialRecord:
    """The finished row, relabelled for ``job`` and marked ``reused_from``."""
    now = datetime.now(UTC)
    trial_id = f"reuse-{row['trial_id']}-{job.digest[:8]}"
    fields = {f.name for f in dataclasses.fields(TrialRecord)}
    values = {k: v for k, v in row.items() if k in fields}
    values.update(experiment=job.experiment, stage=job.stage, variant_id=job.variant_id,
                  trial_id=trial_id, seed=job.seed, reused_from=source_key(row),
                  started_at=now, ended_at=now, wall_s=0.0, gpu_hours=0.0, startup_s=None,
                  epochs_trained=0)
    record = TrialRecord(**values)
    store.append_trial(record)
    if epochs:
        store.append_epochs([
            EpochRecord(**{**{k: v for k, v in e.items() if k in EPOCH_FIELDS},
                           "experiment": job.experiment, "stage": job.stage,
                           "variant_id": job.variant_id, "trial_id": trial_id})
            for e in epochs])
    return record


EPOCH_FIELDS = {f.name for f in dataclasses.fields(EpochRecord)}

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
``ok`` rows are reused (an ASHA-stopped trial did not train all its epochs). A row is trusted
only as far as its checkpoint: before reusing it, the checkpoint file must exist and load as a
posetune checkpoint; otherwise the trial trains again, saying why.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.store.results import ResultsStore
from orchestrator.store.rows import relabel_epochs
from orchestrator.store.schema import TrialRecord
from orchestrator.store.storage import exists, is_local, join, read_bytes, strip_scheme
from orchestrator.study.trials import TrialJob
from pose_core.engine import load_checkpoint
from pose_core.loop import CHECKPOINT_FILE


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
    """The trial that trained ``row``'s checkpoint: the row itself, or the one it was reused
    from (a reuse of a reuse names the original, not the copy in between)."""
    if row.get("reused_from"):
        return str(row["reused_from"])
    return f"{row['experiment']}/{row['stage']}/{row['variant_id']}/seed={row['seed']}"


def checkpoint_problem(uri: str) -> str | None:
    """Why the checkpoint folder ``uri`` cannot be reused (missing, unreadable, not a posetune
    checkpoint), or None when it loads."""
    target = join(uri, CHECKPOINT_FILE)
    try:
        if not exists(target):
            return f"its checkpoint {target} does not exist"
        if is_local(target):
            load_checkpoint(Path(strip_scheme(target)), restore_rng=False)
        else:
            with tempfile.TemporaryDirectory(prefix="posetune-reuse-") as directory:
                path = Path(directory) / CHECKPOINT_FILE
                path.write_bytes(read_bytes(target))
                load_checkpoint(path, restore_rng=False)
    except Exception as error:  # any failure to read or unpickle means: do not trust the row
        first = (str(error).strip().splitlines() or [""])[0][:160]
        return f"its checkpoint {target} does not load ({type(error).__name__}: {first})"
    return None


def reuse(
    jobs: list[TrialJob], rows: list[dict[str, Any]], store: ResultsStore,
    say: Callable[[str], None],
) -> list[TrialJob]:
    """Write rows for the jobs the store (whose latest trial rows are ``rows``) has already
    trained; return those still to train."""
    finished = finished_by_digest(rows)
    epochs: list[dict[str, Any]] | None = None
    problems: dict[str, str | None] = {}  # checkpoint folder -> why it cannot be reused
    todo = []
    for job in jobs:
        row = finished.get(job.digest)
        if row is None or (row["experiment"], row["stage"], row["variant_id"], row["seed"]) \
                == (job.experiment, *job.key):
            todo.append(job)
            continue
        uri = str(row["checkpoint_uri"])
        if uri not in problems:
            problems[uri] = checkpoint_problem(uri)
        if problems[uri] is not None:
            say(f"[{job.experiment}/{job.stage}] {job.variant_id} seed {job.seed}: not reusing "
                f"{source_key(row)}: {problems[uri]}; training it again")
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
        store.append_epochs(relabel_epochs(epochs, job, trial_id))
    return record


"""The Tune callback that lands every trial in Parquet and shows progress on the terminal.

It runs in the driver process. On each reported epoch it keeps the report (rank 0's
metrics) and prints a progress line; when a trial ends (completed, ASHA-stopped or errored)
it writes the trial's row and its epoch history to the results store at once, so nothing
finished is lost if the driver dies later. The row is built from the trial's
:class:`~orchestrator.study.trials.TrialJob` (``trial.config["job"]``): what ran is what it says.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ray import tune

from orchestrator.store.results import ResultsStore
from orchestrator.store.rows import (
    TrialOutcome,
    epoch_records,
    now,
    relabel_epochs,
    trial_record,
)
from orchestrator.store.schema import EpochRecord
from orchestrator.store.storage import is_local, join, read_bytes, strip_scheme
from orchestrator.study.trials import TrialJob
from pose_core.epoch_report import EpochReport
from pose_core.loop import CHECKPOINT_FILE, saved_history


def short(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


class SweepCallback(tune.Callback):  # type: ignore[misc]
    def __init__(
        self, experiment: Any, stage: str, store: ResultsStore, total: int,
        say: Callable[[str], None],
    ) -> None:
        self.experiment = experiment
        self.stage = stage
        self.store = store
        self.total = total
        self.say = say
        self.failures: list[str] = []
        self.fraction: dict[str, float] = {}  # running trials: epochs done / epochs
        self.reports: dict[str, list[EpochReport]] = {}
        self.started: dict[str, datetime] = {}
        self.status: dict[str, str] = {}
        self.best: tuple[float, str] | None = None
        self.t0 = time.time()
        # This stage's epoch rows, read once when the first fork member finishes: its
        # prefixes ran in an earlier phase (orchestrator.plan.forking), so later rows add nothing.
        self._stage_epochs: list[dict[str, Any]] | None = None

    # Tune hooks -------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.started.setdefault(trial.trial_id, now())
        self.status[trial.trial_id] = "running"

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        report = EpochReport.from_dict(result)  # Tune's own keys left out
        self.reports.setdefault(trial.trial_id, []).append(report)
        epochs = max(1, trial.config["job"].config.train.epochs)
        self.fraction[trial.trial_id] = min(1.0, float(report.epoch) / epochs)
        ap = report.AP if report.evaluated else None
        loss = float("nan") if report.loss is None else report.loss
        note = f"epoch {report.epoch}: loss {loss:.3g}"
        if ap is not None:
            note += f", AP {ap:.3f}"
        self._progress(f"{self._variant(trial)} {note}")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._finish(trial, None)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._finish(trial, last_line(trial_error(trial)))

    # -----------------------------------------------------------------------------------
    def _variant(self, trial: Any) -> str:
        return str(trial.config["job"].variant_id)

    def _finish(self, trial: Any, error: str | None) -> None:
        job: TrialJob = trial.config["job"]
        variant = job.variant_id
        reports = self.reports.get(trial.trial_id, [])
        checkpoint = next((r.checkpoint_path for r in reversed(reports) if r.checkpoint_path),
                          None)
        uri = self._uri(job, checkpoint)
        outcome = TrialOutcome(
            job=job, trial_id=trial.trial_id, reports=self.earlier(job, reports, uri) + reports,
            started_at=self.started.get(trial.trial_id, now()),
            ended_at=datetime.now(UTC), error=error, checkpoint_uri=uri,
            startup_s=startup_seconds(self.started.get(trial.trial_id), reports),
        )
        record = trial_record(self.experiment.name, outcome)
        self.store.append_trial(record)
        if reports:
            self.store.append_epochs(prefix_epochs(self.stage_epochs(job), job, trial.trial_id)
                                     + epoch_records(self.experiment.name, outcome))
        self.status[trial.trial_id] = record.status
        if record.status == "failed":
            self.failures.append(f"{job.trial_key}: {record.error}")
        metric = getattr(record, self.experiment.metric)
        if metric is not None and record.status != "failed":
            sign = 1 if self.experiment.mode == "max" else -1
            if self.best is None or sign * metric > sign * self.best[0]:
                self.best = (metric, variant)
        detail = f"{self.experiment.metric} {metric:.3f}" if metric is not None else (error or "")
        self._progress(f"{variant} {record.status}: {detail}")

    def _uri(self, job: TrialJob, path: str | None) -> str | None:
        """Checkpoint paths come without the filesystem scheme (RAY_NOTES 1): add it back."""
        storage = job.run.storage if job.run else ""
        if not path:
            return None
        if "://" in storage and "://" not in path:
            return storage.split("://", 1)[0] + "://" + path.lstrip("/")
        return path

    def earlier(self, job: TrialJob, reports: list[EpochReport],
                uri: str | None) -> list[EpochReport]:
        """The epochs a trial resumed by ``--resume`` trained before the driver died (their
        reports died with it): read from its checkpoint's history. A fork member's inherited
        epochs come from its prefix's rows instead (:func:`prefix_epochs`)."""
        start = job.fork_epoch + 1 if job.fork_of else 1
        if not reports or reports[0].epoch <= start or not uri:
            return []
        target = join(uri, CHECKPOINT_FILE)
        try:
            history = saved_history(Path(strip_scheme(target)) if is_local(target)
                                    else io.BytesIO(read_bytes(target)))
        except Exception as error:  # noqa: BLE001 - the row must land all the same
            self.say(f"[{self.experiment.name}/{self.stage}] {job.variant_id}: epochs "
                     f"{start}-{reports[0].epoch - 1} (run before --resume) have no epoch rows: "
                     f"{target} does not load ({type(error).__name__})")
            return []
        found = {r.epoch: r for r in history if start <= r.epoch < reports[0].epoch}
        return [found[epoch] for epoch in sorted(found)]

    def stage_epochs(self, job: TrialJob) -> list[dict[str, Any]]:
        if job.fork_of is None:
            return []
        if self._stage_epochs is None:
            self._stage_epochs = [r for r in self.store.read_epochs().to_pylist()
                                  if (r["experiment"], r["stage"]) == (job.experiment, job.stage)]
        return self._stage_epochs

    def counts(self) -> dict[str, int]:
        """Finished trials by status (ok, stopped, failed)."""
        out: dict[str, int] = {}
        for status in self.status.values():
            if status != "running":
                out[status] = out.get(status, 0) + 1
        return out

    def finished(self) -> int:
        return sum(self.counts().values())

    def _counts(self) -> tuple[int, int, int]:
        values = list(self.status.values())
        done = sum(v in ("ok", "stopped") for v in values)
        failed = sum(v == "failed" for v in values)
        running = sum(v == "running" for v in values)
        return done, failed, running

    def _progress(self, event: str) -> None:
        done, failed, running = self._counts()
        finished = done + failed
        elapsed = time.time() - self.t0
        eta = ""
        # Work done so far: finished trials whole, running ones by their share of epochs.
        partial = sum(self.fraction.get(t, 0.0) for t, v in self.status.items() if v == "running")
        progress = (finished + partial) / max(1, self.total)
        if finished < self.total and progress > 0.05:
            eta = f", ETA {short(elapsed / progress * (1 - progress))}"
        best = f" | best {self.experiment.metric} {self.best[0]:.3f} ({self.best[1]})" \
            if self.best else ""
        self.say(
            f"[{self.experiment.name}/{self.stage}] {finished}/{self.total} done "
            f"({failed} failed, {running} running){best} | {short(elapsed)}{eta} | {event}"
        )

    def summary(self, seconds: float) -> str:
        done, failed, _ = self._counts()
        return (f"[{self.experiment.name}/{self.stage}] finished: {done} ok/stopped, "
                f"{failed} failed in {short(seconds)}")


def startup_seconds(started: datetime | None, reports: list[EpochReport]) -> float | None:
    """Trial start (driver clock) to the end of the first optimizer step (trial clock; the
    same host on a single node, NTP-close across nodes). None when never measured."""
    first = next((r.first_step_at for r in reports if r.first_step_at), None)
    if started is None or first is None:
        return None
    return round(max(0.0, float(first) - started.timestamp()), 3)


def trial_error(trial: Any) -> str:
    """The trial's error text: the driver-side error file first (written before this hook
    runs), then the copy in storage."""
    path = getattr(trial, "error_file", None)
    try:
        if path:
            with open(path) as handle:
                return handle.read()
    except OSError:
        pass
    try:
        error = trial.get_error()
    except Exception:  # noqa: BLE001 - storage may be unreachable; the row still lands
        error = None
    return str(error or "trial failed without an error message")


def last_line(text: str) -> str:
    """The exception line of a traceback (the row keeps one clear line, not the wall)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if "Error" in line or "Exception" in line:
            return line[:2000]
    return (lines[-1] if lines else text)[:2000]


def prefix_epochs(stage_rows: list[dict[str, Any]], job: TrialJob,
                  trial_id: str) -> list[EpochRecord]:
    """A fork member's first ``fork_epoch`` epochs: its prefix's rows (among ``stage_rows``,
    the stage's epoch rows), relabelled."""
    if job.fork_of is None:
        return []
    variant, seed = job.fork_of
    rows = [r for r in stage_rows
            if (r["experiment"], r["stage"], r["variant_id"], r["seed"]) ==
            (job.experiment, job.stage, variant, seed) and r["epoch"] <= job.fork_epoch]
    latest = {r["epoch"]: r for r in rows}  # a retried prefix: its last attempt's rows
    return relabel_epochs((r for _, r in sorted(latest.items())), job, trial_id)

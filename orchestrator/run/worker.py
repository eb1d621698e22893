"""The training loop a trial runs, around pose_core, and the two ways Ray runs it.

:func:`run_job` runs one :class:`~orchestrator.study.trials.TrialJob`: it assembles the data,
resolves the initial weights and hands over to the one training loop,
:func:`pose_core.loop.train_trial`, which talks to Ray only through a session:

- :class:`TrainSession` (``--runner train``): one Tune trial launches a ``TorchTrainer`` whose
  workers all run :func:`train_loop_per_worker`. Data parallelism: every worker builds the
  same data and model, ``prepare_model`` wraps it in DDP (gloo on CPU, NCCL on GPU), and a
  DistributedSampler seeded by (seed, epoch) splits the batches. Rank 0 evaluates (on the
  unwrapped model, so no collective is left waiting) and writes the checkpoint. Every worker
  calls ``ray.train.report`` once per epoch: it is a barrier. When Ray restarts a failed worker
  group, ``ray.train.get_checkpoint()`` returns the last checkpoint.
- :class:`TuneSession` (``--runner tune``, the default for one worker per trial): the Tune
  trial trains in its own process, with no Train controller, placement group or worker actor
  to start (15-20 s a trial on 2 cores). Its checkpoint lives at a stable URI per trial, so a
  retried trial (Tune ``max_failures``) and a trial rerun by ``--resume`` after the driver
  died both continue from it, as a stable-named Train run does.

Resume is exact either way (model, optimizer, schedule, RNG).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from orchestrator.data.catalog import Catalog, CatalogError
from orchestrator.data.trialdata import TrialData, assemble
from orchestrator.study.trials import TrialJob
from pose_core.config import ConfigError, TrialConfig
from pose_core.engine import NonFiniteLossError
from pose_core.epoch_report import EpochReport, TrialFacts
from pose_core.image_store import ImageStore
from pose_core.loop import CHECKPOINT_FILE, train_trial
from pose_core.metrics import METRIC_NAMES
from pose_core.model_info import model_info
from pose_core.records import DataError

FAULT_ENV = "POSETUNE_FAULT_KILL_AT_EPOCH"
# Set (to 1) only where a logical Ray GPU stands for a real one on a CPU machine (the packing
# benchmark and its test): the trial then trains on the CPU instead of failing.
EMULATE_GPU_ENV = "POSETUNE_EMULATE_GPU"
# Failures that would repeat on every retry (bad data, bad config, a diverging loss): the
# trial ends at once with the error in its row instead of being retried.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (
    DataError, ConfigError, CatalogError, NonFiniteLossError,
)


class _Steps:
    """Per-step hook shared by the sessions: when the first step ended (start-up overhead,
    ``startup_s``), and the fault-injection hook of the reliability tests."""

    first_step: float | None = None
    restarted: bool = False
    last_epoch: int = 0

    def on_step(self, epoch: int, iteration: int, loss: float) -> None:
        if self.first_step is None:
            self.first_step = time.time()
        maybe_inject_fault(epoch, self.restarted, iteration, loss)

    def should_stop(self) -> bool:
        return False  # Ray stops a trial by raising from its report call

    def timed(self, report: EpochReport) -> EpochReport:
        """``report`` with when the first step ended, and noted as the last epoch reported."""
        self.last_epoch = report.epoch
        return dataclasses.replace(report, first_step_at=self.first_step)


class TrainSession(_Steps):
    """A Ray Train worker of a ``TorchTrainer`` run."""

    def __init__(self) -> None:
        import ray.train

        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()

    def device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model) if self.world > 1 else model

    @contextmanager
    def checkpoint(self) -> Iterator[Path | None]:
        import ray.train

        found = ray.train.get_checkpoint()
        if found is None:
            yield None
            return
        self.restarted = True
        with found.as_directory() as directory:
            yield Path(directory) / CHECKPOINT_FILE

    def report(self, report: EpochReport, checkpoint: Path | None) -> None:
        import ray.train

        metrics = self.timed(report).as_dict()
        if checkpoint is None:
            ray.train.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(
                str(checkpoint.parent)))

    def scratch(self) -> str | None:
        return None


class TuneSession(_Steps):
    """A Tune function trainable that trains in its own process (one worker, no DDP).

    ``checkpoint_uri`` is a folder (local or s3://) stable for the trial: each epoch's
    checkpoint replaces the last one there atomically, and it is reported to Tune as
    ``checkpoint_path`` (what two-stage references and the result row use).
    """

    rank, world = 0, 1

    def __init__(self, checkpoint_uri: str,
                 report_to: Callable[[dict[str, Any]], None] | None = None,
                 keep_epoch: int = 0) -> None:
        self.uri = checkpoint_uri
        self.report_to = report_to  # tests: instead of ray.tune.report
        # A fork prefix (orchestrator.plan.forking) keeps a copy of this epoch's checkpoint.
        self.keep_epoch = keep_epoch

    def device(self) -> torch.device:
        # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU (a fraction of one when packed).
        import ray

        if not ray.get_gpu_ids():
            return torch.device("cpu")
        if torch.cuda.is_available():
            return torch.device("cuda")
        if os.environ.get(EMULATE_GPU_ENV) == "1":
            return torch.device("cpu")  # benchmarks/tests: a logical GPU on a CPU machine
        raise RuntimeError(f"Ray gave this trial GPU {ray.get_gpu_ids()} but torch sees no "
                           f"CUDA device on {os.uname().nodename} (driver or CUDA build?)")

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    @contextmanager
    def checkpoint(self) -> Iterator[Path | None]:
        from orchestrator.store.storage import exists, is_local, join, read_bytes, strip_scheme

        uri = join(self.uri, CHECKPOINT_FILE)
        if is_local(uri):
            path = Path(strip_scheme(uri))
            self.restarted = path.is_file()
            yield path if self.restarted else None
            return
        if not exists(uri):
            yield None
            return
        self.restarted = True
        with tempfile.TemporaryDirectory(prefix="posetune-resume-") as directory:
            path = Path(directory) / CHECKPOINT_FILE
            path.write_bytes(read_bytes(uri))
            yield path

    def report(self, report: EpochReport, checkpoint: Path | None) -> None:
        from orchestrator.store.storage import is_local, join, strip_scheme, write_bytes_atomic

        report = self.timed(report)
        if checkpoint is not None:
            uri = join(self.uri, CHECKPOINT_FILE)
            if self.keep_epoch and self.last_epoch == self.keep_epoch:
                from orchestrator.plan.forking import fork_file

                write_bytes_atomic(join(self.uri, fork_file(self.keep_epoch)),
                                   checkpoint.read_bytes())
            if is_local(uri):
                target = Path(strip_scheme(uri))
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(checkpoint, target)  # same file system: written next to it
            else:
                write_bytes_atomic(uri, checkpoint.read_bytes())
            report = dataclasses.replace(report, checkpoint_path=self.uri)
        metrics = report.as_dict()
        if self.report_to is not None:
            self.report_to(metrics)
            return
        from ray import tune

        tune.report(metrics)

    def scratch(self) -> str | None:
        """Where to write a checkpoint before it replaces the last one (local storage: next
        to it, so the rename is atomic; remote: a temp dir)."""
        from orchestrator.store.storage import is_local, strip_scheme

        if not is_local(self.uri):
            return None
        folder = Path(strip_scheme(self.uri))
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)


def resolve_weights(cfg: TrialConfig, catalog: Catalog) -> TrialConfig:
    """Turn ``model.weights`` into something local: for ImageNet init the catalog's file, an
    ``s3://`` file fetched once per node, timm's hub weights (``TIMM_PRETRAINED``) or the
    node's cached generated-pretrained start; for checkpoint init the checkpoint file of a
    local or ``s3://`` checkpoint folder."""
    from orchestrator.data.pretrained import is_generated, local_start
    from orchestrator.data.weights import local_weights
    from orchestrator.store.storage import local_cache

    model = cfg.model
    weights = model.weights
    if model.init == "imagenet":
        if weights is None:
            weights = local_weights(model.backbone, catalog)
        elif is_generated(weights):
            weights = local_start(weights)
        elif "://" in weights:
            weights = local_cache(weights)
    if model.init == "checkpoint" and weights and not Path(weights).is_file():
        weights = fetch_checkpoint(weights)
    if weights != model.weights:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(model, weights=weights))
    return cfg


def fetch_checkpoint(uri: str) -> str:
    """The checkpoint file of a checkpoint folder, local or s3:// (downloaded once)."""
    from orchestrator.store.storage import local_cache

    local = Path(local_cache(uri))
    path = local / CHECKPOINT_FILE if local.is_dir() else local
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {uri} holds no {CHECKPOINT_FILE}")
    return str(path)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The ``TorchTrainer`` entry point (``--runner train``)."""
    run_job(config["job"], TrainSession())


def run_job(job: TrialJob, session: TrainSession | TuneSession) -> None:
    """Train one job to its last epoch (or until Ray stops it), reporting every epoch.

    A deterministic failure (bad data or config, a diverging loss) ends the trial with one
    report carrying the error line: it completes instead of crashing, so neither Tune nor
    Ray Train retries what would fail again. Crashes of the process or node are retried.
    """
    run = job.run
    torch.set_num_threads(max(1, run.threads if run else 1))
    try:
        catalog = Catalog.from_dict(dict(job.catalog))
        cfg = resolve_weights(job.config, catalog)
        data: TrialData = assemble(cfg, catalog)
        facts = trial_facts(cfg, data, session.world, images_skipped(cfg, catalog))
        if session.rank == 0:
            info = model_info(cfg.model, data.skeleton.num_keypoints, cfg.data.input_size)
            facts = dataclasses.replace(facts, params_m=info.params_m, gflops=info.gflops)
        # Decoded images live once per node (memory-mapped from /dev/shm), shared by every
        # trial there: a node's later trials start without decoding.
        train_trial(cfg, data.train, data.test, data.skeleton, session, ImageStore(), facts)
    except DETERMINISTIC_ERRORS as error:
        if session.world > 1:
            raise  # other ranks wait in a collective: let Ray Train tear the group down
        # NaN metrics: Optuna records the trial as failed, not as a score of 0.
        nan: dict[str, Any] = dict.fromkeys(METRIC_NAMES, float("nan"))
        session.report(EpochReport(epoch=session.last_epoch, evaluated=False,
                                   error=f"{type(error).__name__}: {error}", **nan), None)


def trial_facts(cfg: TrialConfig, data: TrialData, world: int, skipped: int) -> TrialFacts:
    """Facts about the trial that go into its result row (reported with every epoch)."""
    return TrialFacts(
        subset_digest=data.mixed.digest,
        datasets=data.datasets + f",test={cfg.data.test}",
        train_images=len(data.train),
        test_images=len(data.test),
        keypoint_names=tuple(data.skeleton.keypoints),
        workers=world,
        node=node_name(),
        images_skipped=skipped,
    )


def images_skipped(cfg: TrialConfig, catalog: Catalog) -> int:
    """Images of this trial's datasets that the preflight found bad and left out (skip)."""
    from orchestrator.plan.preflight import datasets_read

    return sum(len(catalog.entry(name).skipped_image_ids) for name in datasets_read(cfg))


def node_name() -> str:
    """Host name plus the Ray node id (several raylets may share one host)."""
    import ray

    if not ray.is_initialized():  # get_runtime_context() would start a cluster
        return os.uname().nodename
    try:
        node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (never in a trial) keep the host name
        node_id = ""
    return f"{os.uname().nodename}/{node_id}" if node_id else os.uname().nodename


def maybe_inject_fault(epoch: int, restarted: bool, iteration: int, loss: float) -> None:
    """Fault-injection hook for the reliability tests: SIGKILL this worker once, mid-epoch
    (after the second step of 0-based epoch ``$POSETUNE_FAULT_KILL_AT_EPOCH``), never after a
    restart. Unset (always, outside the tests): no effect."""
    target = os.environ.get(FAULT_ENV)
    if target is None or restarted or epoch != int(target) or iteration != 1:
        return
    # Train V2's controller collects reports by polling: a worker that dies within about a
    # second of ray.train.report loses that report and its checkpoint (seen here with 0.3 s
    # epochs). Real epochs last minutes; wait so the kill lands mid-epoch as it would.
    time.sleep(float(os.environ.get("POSETUNE_FAULT_DELAY_S", "5")))
    marker = os.environ.get("POSETUNE_FAULT_MARKER")
    if marker:
        if Path(marker).exists():
            return
        Path(marker).write_text(str(time.time()))
    os.kill(os.getpid(), 9)

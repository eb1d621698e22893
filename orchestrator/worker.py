"""The training loop a trial runs, around pose_core, and the two ways Ray runs it.

:func:`run_trial` is the loop: assemble data, build the model, resume from a checkpoint if
there is one, train, evaluate, report every epoch with a checkpoint. It talks to Ray only
through a :class:`Session`:

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
import functools
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch

from orchestrator.catalog import Catalog
from orchestrator.trialdata import TrialData, assemble
from pose_core.config import TrialConfig
from pose_core.engine import (
    NonFiniteLossError,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    train_one_epoch,
    unwrap,
)
from pose_core.image_store import ImageStore
from pose_core.model_info import model_info
from pose_core.trainer import (
    build_trial,
    epoch_row,
    gt_records,
    make_datasets,
    make_loader,
    set_loader_epoch,
    should_evaluate,
)

CHECKPOINT_FILE = "checkpoint.pt"
FAULT_ENV = "POSETUNE_FAULT_KILL_AT_EPOCH"
# Set (to 1) only where a logical Ray GPU stands for a real one on a CPU machine (the packing
# benchmark and its test): the trial then trains on the CPU instead of failing.
EMULATE_GPU_ENV = "POSETUNE_EMULATE_GPU"


class Session(Protocol):
    """What the loop needs from Ray: who it is, where it runs, how it reports."""

    rank: int
    world: int

    def device(self) -> torch.device: ...

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module: ...

    def checkpoint(self) -> Any:
        """A context manager giving the local path of the checkpoint file, or None."""
        ...

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None: ...

    def scratch(self) -> str | None:
        """Where to write a checkpoint before reporting it (None: the system temp dir)."""
        ...


class TrainSession:
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
        with found.as_directory() as directory:
            yield Path(directory) / CHECKPOINT_FILE

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        import ray.train

        if checkpoint is None:
            ray.train.report(metrics)
        else:
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(
                str(checkpoint.parent)))

    def scratch(self) -> str | None:
        return None


class TuneSession:
    """A Tune function trainable that trains in its own process (one worker, no DDP).

    ``checkpoint_uri`` is a folder (local or s3://) stable for the trial: each epoch's
    checkpoint replaces the last one there atomically, and it is reported to Tune as
    ``checkpoint_path`` (what two-stage references and the result row use).
    """

    rank, world = 0, 1

    def __init__(self, checkpoint_uri: str) -> None:
        self.uri = checkpoint_uri

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
        from orchestrator.storage import exists, is_local, join, read_bytes, strip_scheme

        uri = join(self.uri, CHECKPOINT_FILE)
        if is_local(uri):
            path = Path(strip_scheme(uri))
            yield path if path.is_file() else None
            return
        if not exists(uri):
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="posetune-resume-") as directory:
            path = Path(directory) / CHECKPOINT_FILE
            path.write_bytes(read_bytes(uri))
            yield path

    def report(self, metrics: dict[str, Any], checkpoint: Path | None) -> None:
        from ray import tune

        from orchestrator.storage import is_local, join, strip_scheme, write_bytes_atomic

        if checkpoint is not None:
            uri = join(self.uri, CHECKPOINT_FILE)
            if is_local(uri):
                target = Path(strip_scheme(uri))
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(checkpoint, target)  # same file system: written next to it
            else:
                write_bytes_atomic(uri, checkpoint.read_bytes())
            metrics = metrics | {"checkpoint_path": self.uri}
        tune.report(metrics)

    def scratch(self) -> str | None:
        """Where to write a checkpoint before it replaces the last one (local storage: next
        to it, so the rename is atomic; remote: a temp dir)."""
        from orchestrator.storage import is_local, strip_scheme

        if not is_local(self.uri):
            return None
        folder = Path(strip_scheme(self.uri))
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder)


def resolve_weights(cfg: TrialConfig, catalog: Catalog) -> TrialConfig:
    """Turn ``model.weights`` into a local file: catalog ImageNet weights, or a checkpoint URI."""
    model = cfg.model
    weights = model.weights
    if model.init == "imagenet" and weights is None:
        weights = catalog.weights_for(model.backbone)
    if model.init == "checkpoint" and weights and not Path(weights).is_file():
        weights = fetch_checkpoint(weights)
    if weights != model.weights:
        cfg = dataclasses.replace(cfg, model=dataclasses.replace(model, weights=weights))
    return cfg


def fetch_checkpoint(uri: str) -> str:
    """The checkpoint file of a checkpoint folder, local or s3:// (downloaded once)."""
    from orchestrator.storage import local_cache

    local = Path(local_cache(uri))
    path = local / CHECKPOINT_FILE if local.is_dir() else local
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {uri} holds no {CHECKPOINT_FILE}")
    return str(path)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The ``TorchTrainer`` entry point (``--runner train``)."""
    run_trial(config, TrainSession())


def run_trial(config: dict[str, Any], session: Session) -> None:
    """Train one trial to its last epoch (or until Ray stops it), reporting every epoch."""
    rank, world = session.rank, session.world
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    catalog = Catalog.from_dict(config["catalog"])
    cfg = resolve_weights(TrialConfig.from_dict(config["trial"]), catalog)
    data: TrialData = assemble(cfg, catalog)
    # Decoded images live once per node (memory-mapped from /dev/shm), shared by every trial
    # there: a node's later trials start without decoding.
    train_set, test_set = make_datasets(cfg, data.train, data.test, data.skeleton, ImageStore())
    workers = cfg.data.loader_workers
    train_loader = make_loader(train_set, cfg.train.batch_size, True, cfg.train.seed, workers,
                               rank, world)
    test_loader = make_loader(test_set, cfg.train.batch_size, False, 0, workers)
    device = session.device()
    trial = build_trial(cfg, data.skeleton, len(train_loader), device)
    model = session.prepare(trial.model)
    restarted = False
    with session.checkpoint() as path:
        if path is not None:
            state = load_checkpoint(path, model, trial.optimizer, trial.scheduler)
            trial.epoch = int(state["epoch"])
            trial.history = list(state["extra"].get("history", []))
            restarted = True
    static = trial_static(cfg, data, trial.init_message, world)
    if rank == 0:
        info = model_info(cfg.model, data.skeleton.num_keypoints, cfg.data.input_size)
        static |= {"params_m": info.params_m, "gflops": info.gflops}
    records = gt_records(data.test)
    generator = torch.Generator().manual_seed(cfg.train.seed + rank) if cfg.data.cutmix else None
    last_metrics: dict[str, Any] = dict(trial.history[-1]) if trial.history else {}
    if restarted and trial.epoch >= cfg.train.epochs and trial.history:
        # The run had finished before (the sweep driver died before writing its row):
        # report the final epoch again so the driver can record it. Nothing is retrained.
        report_epoch(session, carry_metrics(last_metrics, last_metrics) | static, trial, model,
                     cfg, data)
        return
    timing = StartupTiming()
    while trial.epoch < cfg.train.epochs:
        set_loader_epoch(train_loader, cfg.train.seed, trial.epoch)
        on_step = functools.partial(step_hook, timing, trial.epoch, restarted)
        try:
            stats = train_one_epoch(model, train_loader, trial.optimizer, trial.scheduler,
                                    trial.loss_fn, device, trial.epoch, cfg.train, generator,
                                    on_step)
        except NonFiniteLossError as error:
            if world > 1:
                raise  # other ranks wait in a collective: let Ray Train tear the group down
            # Deterministic: a restart from the last checkpoint would diverge again. End the
            # trial now; the driver records it as failed with this reason.
            session.report(last_metrics | static | {"epoch": trial.epoch, "error": str(error)},
                           None)
            return
        trial.epoch += 1
        metrics = None
        if rank == 0 and should_evaluate(cfg, trial.epoch):
            metrics = evaluate(unwrap(model), test_loader, records, data.skeleton.flip_index,
                               trial.sigmas, cfg.eval, device, cfg.train.bf16)
        row = epoch_row(stats, metrics)
        row["images_per_s"] = stats.images_per_s * world
        row["restarted"] = restarted
        trial.history.append(row)
        report = carry_metrics(row, last_metrics) | static | timing.fields()
        last_metrics = report
        report_epoch(session, report, trial, model, cfg, data)


@dataclasses.dataclass
class StartupTiming:
    """When the trial's first optimizer step ended (unix time): the driver turns it into the
    trial's start-up overhead (``startup_s``)."""

    first_step: float | None = None

    def fields(self) -> dict[str, float]:
        return {} if self.first_step is None else {"first_step_at": self.first_step}


def step_hook(timing: StartupTiming, epoch: int, restarted: bool, iteration: int,
              loss: float) -> None:
    if timing.first_step is None:
        timing.first_step = time.time()
    maybe_inject_fault(epoch, restarted, iteration, loss)


def carry_metrics(row: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """Every report holds the metric keys (ASHA and Optuna need them each epoch): epochs
    without evaluation carry the last evaluated values (0.0 before the first one)."""
    out = dict(row)
    for key in ("AP", "AP50", "AP75", "AP85", "AR", "PCK05"):
        out.setdefault(key, last.get(key, 0.0))
    for key in ("pck_per_keypoint", "ap_per_keypoint", "error_per_keypoint",
                "swap_rate_per_keypoint"):
        if key not in out and key in last:
            out[key] = last[key]
    return out


def trial_static(cfg: TrialConfig, data: TrialData, init_message: str, world: int) -> dict[str, Any]:
    """Facts about the trial that go into its result row (reported with every epoch)."""
    return {
        "subset_digest": data.mixed.digest,
        "datasets": data.datasets + f",test={cfg.data.test}",
        "train_images": len(data.train),
        "test_images": len(data.test),
        "keypoint_names": list(data.skeleton.keypoints),
        "init_message": init_message,
        "workers": world,
        "node": node_name(),
    }


def node_name() -> str:
    """Host name plus the Ray node id (several raylets may share one host)."""
    import ray

    try:
        node_id = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (never in a trial) keep the host name
        node_id = ""
    return f"{os.uname().nodename}/{node_id}" if node_id else os.uname().nodename


def report_epoch(
    session: Session, report: dict[str, Any], trial: Any, model: torch.nn.Module,
    cfg: TrialConfig, data: TrialData,
) -> None:
    if session.rank != 0:
        session.report({k: v for k, v in report.items() if not isinstance(v, list)}, None)
        return
    with tempfile.TemporaryDirectory(prefix=".tmp-posetune-ckpt-",
                                     dir=session.scratch()) as directory:
        path = Path(directory) / CHECKPOINT_FILE
        save_checkpoint(path, model, trial.optimizer, trial.scheduler, trial.epoch,
                        cfg.to_dict(), data.skeleton.keypoints, {"history": trial.history})
        session.report(report, path)


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

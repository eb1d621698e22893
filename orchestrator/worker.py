"""The per-worker Ray Train loop around pose_core.

Each Tune trial launches one ``TorchTrainer`` whose workers all run
:func:`train_loop_per_worker`. Data parallelism: every worker builds the same data and model,
``prepare_model`` wraps it in DDP (gloo on CPU, NCCL on GPU), and a DistributedSampler
seeded by (seed, epoch) splits the batches. Rank 0 evaluates (on the unwrapped model, so no
collective is left waiting), writes the checkpoint, and its metrics reach Tune through
``TuneReportCallback``. Every worker calls ``ray.train.report`` once per epoch: it is a
barrier. When Ray restarts a failed worker group, ``ray.train.get_checkpoint()`` returns the
last checkpoint and training resumes from it exactly (model, optimizer, schedule, RNG).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from orchestrator.catalog import Catalog
from orchestrator.trialdata import TrialData, assemble
from pose_core.config import TrialConfig
from pose_core.dataset import ImageCache
from pose_core.engine import (
    NonFiniteLossError,
    evaluate,
    load_checkpoint,
    save_checkpoint,
    train_one_epoch,
    unwrap,
)
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
    """The checkpoint file of a Ray checkpoint folder, local or s3:// (downloaded once)."""
    from orchestrator.storage import local_cache

    local = Path(local_cache(uri))
    path = local / CHECKPOINT_FILE if local.is_dir() else local
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {uri} holds no {CHECKPOINT_FILE}")
    return str(path)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(config.get("threads", 1))))
    catalog = Catalog.from_dict(config["catalog"])
    cfg = resolve_weights(TrialConfig.from_dict(config["trial"]), catalog)
    data: TrialData = assemble(cfg, catalog)
    train_set, test_set = make_datasets(cfg, data.train, data.test, data.skeleton, ImageCache())
    workers = cfg.data.loader_workers
    train_loader = make_loader(train_set, cfg.train.batch_size, True, cfg.train.seed, workers,
                               rank, world)
    test_loader = make_loader(test_set, cfg.train.batch_size, False, 0, workers)
    device = ray.train.torch.get_device()
    trial = build_trial(cfg, data.skeleton, len(train_loader), device)
    model = ray.train.torch.prepare_model(trial.model) if world > 1 else trial.model
    restarted = False
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(Path(directory) / CHECKPOINT_FILE, model, trial.optimizer,
                                    trial.scheduler)
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
        report_epoch(rank, carry_metrics(last_metrics, last_metrics) | static, trial, model,
                     cfg, data)
        return
    while trial.epoch < cfg.train.epochs:
        set_loader_epoch(train_loader, cfg.train.seed, trial.epoch)
        on_step = functools.partial(maybe_inject_fault, trial.epoch, restarted)
        try:
            stats = train_one_epoch(model, train_loader, trial.optimizer, trial.scheduler,
                                    trial.loss_fn, device, trial.epoch, cfg.train, generator,
                                    on_step)
        except NonFiniteLossError as error:
            if world > 1:
                raise  # other ranks wait in a collective: let Ray Train tear the group down
            # Deterministic: a restart from the last checkpoint would diverge again. End the
            # trial now; the driver records it as failed with this reason.
            ray.train.report(last_metrics | static | {"epoch": trial.epoch, "error": str(error)})
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
        report = carry_metrics(row, last_metrics) | static
        last_metrics = report
        report_epoch(rank, report, trial, model, cfg, data)


def carry_metrics(row: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """Every report holds the metric keys (ASHA and Optuna need them each epoch): epochs
    without evaluation carry the last evaluated values (0.0 before the first one)."""
    out = dict(row)
    for key in ("AP", "AP50", "AP75", "AP85", "AR", "PCK05"):
        out.setdefault(key, last.get(key, 0.0))
    if "pck_per_keypoint" not in out and "pck_per_keypoint" in last:
        out["pck_per_keypoint"] = last["pck_per_keypoint"]
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
    rank: int, report: dict[str, Any], trial: Any, model: torch.nn.Module, cfg: TrialConfig,
    data: TrialData,
) -> None:
    import ray.train

    if rank != 0:
        ray.train.report({k: v for k, v in report.items() if not isinstance(v, list)})
        return
    with tempfile.TemporaryDirectory(prefix="posetune-ckpt-") as directory:
        save_checkpoint(Path(directory) / CHECKPOINT_FILE, model, trial.optimizer,
                        trial.scheduler, trial.epoch, cfg.to_dict(), data.skeleton.keypoints,
                        {"history": trial.history})
        ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(directory))


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

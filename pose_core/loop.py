"""The one training loop, and the small session protocol through which it is run.

:func:`train_trial` builds the loaders and the model, resumes from the session's checkpoint
if there is one, then trains, evaluates every ``eval.interval`` epochs and reports every
epoch with a checkpoint. Who runs it only changes the :class:`Session`:

- :class:`LocalSession` (here): a plain process; checkpoints in a folder
  (:func:`fit`).
- the orchestrator's Tune and Ray Train sessions (``orchestrator.run.worker``).

The loop never imports Ray, prints or writes result rows: it calls ``session.report``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Protocol

import torch

from pose_core.config import TrialConfig
from pose_core.dataset import ImageCache, ImageSource
from pose_core.engine import evaluate, load_checkpoint, save_checkpoint, train_one_epoch, unwrap
from pose_core.epoch_report import EpochReport, TrialFacts, measured
from pose_core.records import Instance
from pose_core.skeletons import Skeleton
from pose_core.trainer import (
    Trial,
    build_trial,
    gt_records,
    make_datasets,
    make_loader,
    set_loader_epoch,
    should_evaluate,
)

CHECKPOINT_FILE = "checkpoint.pt"


class Session(Protocol):
    """What the loop needs from whoever runs it."""

    rank: int
    world: int

    def device(self) -> torch.device: ...

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Wrap the model for data parallelism (or return it as it is)."""
        ...

    def checkpoint(self) -> Any:
        """A context manager giving the local path of the last checkpoint, or None."""
        ...

    def scratch(self) -> str | None:
        """Where to write a checkpoint before reporting it (None: the system temp dir)."""
        ...

    def report(self, report: EpochReport, checkpoint: Path | None) -> None:
        """One epoch's report and (rank 0) the checkpoint file, which the session may move."""
        ...

    def on_step(self, epoch: int, iteration: int, loss: float) -> None:
        """After every optimizer step (timing, fault injection)."""
        ...

    def should_stop(self) -> bool:
        """Asked after every report: end the run now (the checkpoint is saved)."""
        ...


class LocalSession:
    """One process, checkpoints as ``FOLDER/checkpoint.pt`` (None: no checkpoints)."""

    rank, world = 0, 1

    def __init__(
        self, folder: str | Path | None = None, resume: bool = True,
        stop_after: int | None = None, on_epoch: Callable[[EpochReport], None] | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.resume, self.stop_after, self.on_epoch = resume, stop_after, on_epoch
        self._device = device
        self.epochs = 0

    def device(self) -> torch.device:
        return self._device or torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    @contextmanager
    def checkpoint(self) -> Iterator[Path | None]:
        path = self.folder / CHECKPOINT_FILE if self.folder is not None else None
        yield path if path is not None and self.resume and path.is_file() else None

    def scratch(self) -> str | None:
        if self.folder is None:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        return str(self.folder)

    def report(self, report: EpochReport, checkpoint: Path | None) -> None:
        if checkpoint is not None and self.folder is not None:
            os.replace(checkpoint, self.folder / CHECKPOINT_FILE)
        self.epochs = report.epoch
        if self.on_epoch is not None:
            self.on_epoch(report)

    def on_step(self, epoch: int, iteration: int, loss: float) -> None:
        return None

    def should_stop(self) -> bool:
        return self.stop_after is not None and self.epochs >= self.stop_after


def train_trial(
    cfg: TrialConfig,
    train: Sequence[Instance],
    test: Sequence[Instance],
    skeleton: Skeleton,
    session: Session,
    images: ImageSource | None = None,
    facts: TrialFacts | None = None,
) -> Trial:
    """Train ``cfg.train.epochs`` epochs (or until the session stops it), reporting each.

    The trial's ``facts`` (data digest, model size, ...) go into every report. A run whose
    checkpoint is already at the last epoch reports that epoch again and trains nothing
    (a driver that died after the trial finished still gets its row).
    """
    rank, world = session.rank, session.world
    train_set, test_set = make_datasets(cfg, train, test, skeleton, images or ImageCache())
    workers = cfg.data.loader_workers
    train_loader = make_loader(train_set, cfg.train.batch_size, True, cfg.train.seed, workers,
                               rank, world)
    test_loader = make_loader(test_set, cfg.train.batch_size, False, 0, workers)
    device = session.device()
    trial = build_trial(cfg, skeleton, len(train_loader), device)
    model = compile_model(session.prepare(trial.model), cfg, device)
    restarted = False
    with session.checkpoint() as path:
        if path is not None:
            state = load_checkpoint(path, model, trial.optimizer, trial.scheduler)
            trial.epoch = int(state["epoch"])
            trial.history = list(state["extra"].get("history", []))
            restarted = True
    facts = dataclasses.replace(facts or TrialFacts(), init_message=trial.init_message)
    records = gt_records(test)
    generator = torch.Generator().manual_seed(cfg.train.seed + rank) if cfg.data.cutmix else None
    last = EpochReport.from_dict(trial.history[-1]) if trial.history else EpochReport()
    if restarted and trial.epoch >= cfg.train.epochs and trial.history:
        _report(session, dataclasses.replace(last.carried(last), facts=facts), trial, model)
        return trial
    while trial.epoch < cfg.train.epochs:
        set_loader_epoch(train_loader, cfg.train.seed, trial.epoch)
        epoch = trial.epoch

        def on_step(iteration: int, loss: float, epoch: int = epoch) -> None:
            session.on_step(epoch, iteration, loss)

        stats = train_one_epoch(model, train_loader, trial.optimizer, trial.scheduler,
                                trial.loss_fn, device, epoch, cfg.train, generator, on_step)
        trial.epoch += 1
        metrics = None
        if rank == 0 and should_evaluate(cfg, trial.epoch):
            metrics = evaluate(unwrap(model), test_loader, records, skeleton.flip_index,
                               trial.sigmas, cfg.eval, device, cfg.train.bf16)
        report = measured(stats, metrics, world, restarted)
        trial.history.append(report.as_dict())
        last = dataclasses.replace(report.carried(last), facts=facts)
        _report(session, last, trial, model)
        if session.should_stop():
            break
    return trial


def saved_history(checkpoint: str | Path | IO[bytes]) -> list[EpochReport]:
    """Every epoch a checkpoint's trial reported up to it, oldest first (the history
    :func:`train_trial` keeps in each checkpoint, carried over resumes and, for a forked
    trial, from its prefix). A file path is memory-mapped: the tensors are not read."""
    local = isinstance(checkpoint, (str, Path))
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=local)
    if not isinstance(state, dict) or state.get("format") != "posetune-checkpoint-1":
        raise ValueError(f"{checkpoint} is not a posetune checkpoint (no 'format' key)")
    return [EpochReport.from_dict(entry) for entry in state["extra"].get("history", [])]


def compile_model(model: torch.nn.Module, cfg: TrialConfig, device: torch.device) -> Any:
    """``train.compile``: ``torch.compile`` the training model (CUDA, or CPU when asked; CPU
    needs a C++ compiler). Checkpoints and evaluation use the bare model (``unwrap``)."""
    if not cfg.train.compile:
        return model
    return torch.compile(model, dynamic=False)


def _report(session: Session, report: EpochReport, trial: Trial, model: torch.nn.Module) -> None:
    if session.rank != 0:
        session.report(report.without_lists(), None)
        return
    with tempfile.TemporaryDirectory(prefix=".tmp-posetune-ckpt-",
                                     dir=session.scratch()) as directory:
        path = Path(directory) / CHECKPOINT_FILE
        save_checkpoint(path, model, trial.optimizer, trial.scheduler, trial.epoch,
                        trial.config.to_dict(), trial.skeleton.keypoints,
                        {"history": trial.history})
        session.report(report, path)


def fit(
    cfg: TrialConfig,
    train: Sequence[Instance],
    test: Sequence[Instance],
    skeleton: Skeleton,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    on_epoch: Callable[[EpochReport], None] | None = None,
    device: torch.device | None = None,
) -> Trial:
    """Train ``cfg.train.epochs`` epochs in this process: the sweep's loop
    (:func:`pose_core.loop.train_trial`) with a :class:`pose_core.loop.LocalSession`.

    With ``checkpoint_dir`` a checkpoint is written after every epoch and, when ``resume``
    is set and one exists, training continues from it exactly. ``stop_after`` ends the run
    after that many completed epochs (used to test interruption).
    """
    session = LocalSession(checkpoint_dir, resume, stop_after, on_epoch, device)
    return train_trial(cfg, train, test, skeleton, session)

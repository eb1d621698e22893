"""How a sweep is interrupted: Ctrl-C, and SIGTERM taking the same path.

Ctrl-C inside ``Tuner.fit()`` is Tune's: its SIGINT handler stops the run, saves its state
and returns as if done, saying so only in a log line (:func:`interruption_watch` notices
it; the stage runner then reports the stage interrupted). Ctrl-C anywhere else raises
``KeyboardInterrupt``. Either way the CLI prints the interruption line with the command
that resumes the sweep, and exits 130.

SIGTERM (a job scheduler's stop, ``timeout``, ``kill``) does what SIGINT would do at that
moment (:func:`sigterm_as_ctrl_c`), except when the Ray cluster this process started is
going down with it (the signal reached the whole process group or job): see :func:`as_ctrl_c`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

EXIT_INTERRUPTED = 130  # as a shell reports a process ended by Ctrl-C


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM takes Ctrl-C's path while the sweep runs (:func:`as_ctrl_c`). Signal handlers
    belong to the main thread: elsewhere nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = signal.signal(signal.SIGTERM, functools.partial(as_ctrl_c, exited()))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, saved)


def as_ctrl_c(exited_before: set[int], signum: int, frame: FrameType | None) -> None:
    """What SIGINT would do now: inside ``Tuner.fit()`` Tune's handler stops the run and
    saves its state; elsewhere ``KeyboardInterrupt``.

    Except when the Ray cluster this process started got the signal too (it reached the
    whole process group or job: ``timeout``, Slurm; its dashboard exits at once, its raylet
    drains): then Tune's cleanup, and Ray's exit hooks after it, would wait 60 s for the
    GCS and abort with a C++ stack dump. So ``KeyboardInterrupt`` is raised at once, and the
    process ends with Ctrl-C's code as soon as the CLI has printed the interruption line.

    Either way the messages Ray forwards to the driver stop here: the stopping cluster's
    last words (the autoscaler's traceback of being terminated) are not the user's news."""
    quiet_ray()
    if own_cluster_stopping(exited_before):
        atexit.register(exit_interrupted)  # runs first: exit hooks run last-in first-out
        raise KeyboardInterrupt
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def quiet_ray() -> None:
    """No more of Ray's forwarded worker and error messages on this terminal."""
    worker = sys.modules.get("ray._private.worker")
    if worker is not None and hasattr(worker, "print_to_stdstream"):
        setattr(worker, "print_to_stdstream", lambda data, ignore_prefix: None)  # noqa: B010


def local_node() -> Any:
    """The Ray node this process started (None before Ray starts or for a joined cluster:
    then it runs no processes of its own)."""
    worker = getattr(getattr(sys.modules.get("ray"), "_private", None), "worker", None)
    return getattr(worker, "_global_node", None)


def exited() -> set[int]:
    """Process ids of our local Ray cluster's processes that have exited."""
    node = local_node()
    try:
        return {process.pid for _, process in node.dead_processes()} if node else set()
    except Exception:  # noqa: BLE001 - Ray's private node API changed: assume all live
        return set()


def own_cluster_stopping(exited_before: set[int], wait_s: float = 1.0) -> bool:
    """Whether a process of our local Ray cluster exits (or did) since the sweep started,
    waiting up to ``wait_s`` for one: they got the same signal."""
    if local_node() is None:
        return False
    deadline = time.monotonic() + wait_s
    while not exited() - exited_before:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def exit_interrupted() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


class InterruptionWatch(logging.Handler):
    """Records Tune's "Experiment has been interrupted" (logged by ``ray.tune.tune`` when
    Ctrl-C ended ``fit()``); prints nothing itself."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.interrupted = False

    def emit(self, record: logging.LogRecord) -> None:
        if "has been interrupted" in record.getMessage():
            self.interrupted = True


@contextlib.contextmanager
def interruption_watch(debug: bool) -> Iterator[InterruptionWatch]:
    logger = logging.getLogger("ray.tune.tune")
    watch = InterruptionWatch()
    saved = (logger.level, logger.propagate)
    logger.setLevel(logging.WARNING)
    logger.propagate = debug  # the line reaches the terminal only with --debug
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

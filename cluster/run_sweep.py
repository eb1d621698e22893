"""Run ``posetune sweep`` on the head node of a cluster started with ``ray up``.

``ray submit`` copies a script to the head and runs it there with the arguments after ``--``::

    ray submit --tmux cluster/aws-gpu.yaml cluster/run_sweep.py -- \\
        two_stage --results s3://my-bucket/posetune/two_stage

This script replaces itself with ``posetune sweep <those arguments> --address auto``, so the
sweep's exit status and signals (Ctrl-C in ``ray attach --tmux``) are the CLI's own, and it
joins the cluster running on this head node: ``posetune sweep`` joins a cluster only when
told to (``--address``, or ``RAY_ADDRESS`` as ``ray job submit`` sets it), and otherwise
starts a local cluster of its own.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

USAGE = (
    "usage: ray submit CLUSTER.yaml cluster/run_sweep.py -- "
    "EXPERIMENT [--results URI] [--resume] [--smoke] [--seeds N] [--set key=value ...]"
)


def build_command(args: Sequence[str]) -> list[str]:
    """Return the ``posetune sweep`` argv for the arguments given after ``--``.

    A leading ``sweep`` is accepted and dropped, so ``-- sweep two_stage`` works too.
    Raises ValueError when no experiment is named.
    """
    rest = list(args)
    if rest and rest[0] == "sweep":
        rest = rest[1:]
    if not rest or rest[0].startswith("-"):
        raise ValueError(f"name an experiment first (see `posetune list`)\n{USAGE}")
    told = any(arg == "--address" or arg.startswith("--address=") for arg in rest)
    return ["posetune", "sweep", *rest, *([] if told else ["--address", "auto"])]


def main(argv: Sequence[str] | None = None) -> int:
    """Exec ``posetune sweep``; returns only on an error (exit status 2)."""
    try:
        command = build_command(sys.argv[1:] if argv is None else argv)
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    if shutil.which(command[0]) is None:
        print(
            "posetune is not installed on this node: check setup_commands in the cluster YAML "
            "and re-run `ray up`.",
            file=sys.stderr,
        )
        return 2
    print("+", " ".join(command), flush=True)
    os.execvp(command[0], command)
    return 0  # unreachable: execvp replaces the process or raises OSError


if __name__ == "__main__":
    sys.exit(main())

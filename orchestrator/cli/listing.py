"""``posetune list``: the shipped experiments as text for the terminal or a Markdown table.

Both read the rows of ``search_spaces.describe_all`` (the README's experiment table is the
Markdown form, checked by a test), so the list, the README and the experiment files agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Row = Mapping[str, Any]


def reproduces(row: Row) -> str:
    """What the experiment reproduces: the first line of its file's docstring."""
    return str(row["description"]).rstrip(".")


def stage_counts(row: Row) -> str:
    """``pretrain 1 + main 9``: trials per stage, in run order."""
    return " + ".join(f"{s['name']} {s['trials']}" for s in row["stages"])


def trial_counts(row: Row, unit: str = " trials") -> str:
    """``10 trials (pretrain 1 + main 9)``, or ``4 trials`` for a one-stage experiment."""
    total = f"{row['total_trials']}{unit}"
    return f"{total} ({stage_counts(row)})" if len(row["stages"]) > 1 else total


def listing_text(rows: Sequence[Row]) -> str:
    """Two lines per experiment: name and what it reproduces, then its trials and datasets."""
    width = max(len(str(r["name"])) for r in rows)
    lines = []
    for row in rows:
        lines.append(f"{row['name']:<{width}}  {reproduces(row)}")
        lines.append(f"{'':<{width}}  {trial_counts(row)}; reads {', '.join(row['datasets'])}")
    lines += ["", "Trials are counted for one seed; --seeds N repeats each. Run one CPU-sized with",
              "'posetune sweep NAME --smoke', or at full size (a GPU cluster's job) without it."]
    return "\n".join(lines) + "\n"


def listing_markdown(rows: Sequence[Row]) -> str:
    """The README's experiment table."""
    lines = ["| experiment | reproduces | trials | datasets |", "|---|---|---|---|"]
    lines += [f"| `{row['name']}` | {reproduces(row)} | {trial_counts(row, unit='')} | "
              f"{', '.join(row['datasets'])} |" for row in rows]
    return "\n".join(lines) + "\n"

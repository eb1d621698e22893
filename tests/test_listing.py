"""``posetune list``: totals and per-stage trials, what each experiment reproduces, and the
README's experiment table generated from the same rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.listing import listing_markdown, listing_text
from search_spaces import describe_all

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_experiment_table_is_the_generated_one() -> None:
    text = README.read_text()
    match = re.search(r"^\| experiment \| reproduces .*?\n(?!\|)", text, re.MULTILINE | re.DOTALL)
    assert match, "README has no experiment table; paste `posetune list --markdown`"
    assert match.group(0) == listing_markdown(describe_all()), (
        "README's experiment table is stale: replace it with `posetune list --markdown`")


def test_text_names_stages_tables_and_datasets() -> None:
    rows = {r["name"]: r for r in describe_all()}
    assert rows["real_amount"]["total_trials"] == 10 and rows["real_amount"]["trials"] == 9
    lines = listing_text(list(rows.values())).splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("real_amount "))
    assert "Table 3: how many real lynx images" in lines[at]
    assert lines[at + 1].split() == ["10", "trials", "(pretrain", "1", "+", "main", "9);",
                                     "reads", "animalpose,", "lynx-test,", "lynx-train"]
    assert sum(r["total_trials"] for r in rows.values()) == 93  # every shipped experiment, 1 seed


def test_markdown_and_json_do_not_combine(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--markdown"]) == 0
    assert capsys.readouterr().out == listing_markdown(describe_all())
    with pytest.raises(SystemExit):
        main(["list", "--markdown", "--json"])

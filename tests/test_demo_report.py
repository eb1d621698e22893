"""The demo's closing report on fixed rows: its table, the answer read off the rows, the hints."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from orchestrator.report.demo import (
    DEMO_SPREAD,
    Spread,
    duration_text,
    invocation,
    next_lines,
    render_demo_report,
)


def row(real: int, synthetic: int, ap: float | None, status: str = "ok",
        wall_s: float = 46.1) -> dict[str, Any]:
    metrics = dict.fromkeys(("AP", "AP75", "AP85", "PCK05"), ap)
    return {"real_count": real, "synthetic_count": synthetic, "status": status,
            "epochs_run": 20, "wall_s": wall_s, "seed": 0, **metrics}


SPREAD = Spread({"base set only": (0.100, 0.136)}, "in a test")  # 0.036 apart

# The README's recorded run.
README_ROWS = [row(0, 0, 0.121), row(0, 100, 0.304), row(40, 0, 0.276),
               row(40, 100, 0.328, wall_s=67.8)]


def flat(text: str) -> str:
    """The report with wrapped prose lines joined again."""
    return " ".join(line.strip() for line in text.splitlines())


def test_readme_rows_answer_yes_but_cannot_split_the_top_two() -> None:
    text = render_demo_report(README_ROWS, ".venv/bin/posetune", "posetune-demo/results",
                              spread=SPREAD)
    assert "base + 40 real + 100 synthetic  0.328" in text
    assert "1m08s" in text and "46s" in text and "0.3280" not in text
    assert "Answer: yes. Best: base + 40 real + 100 synthetic, AP 0.328 against 0.121" in text
    assert "(+0.207, more than the run-to-run spread of 0.036)" in flat(text)
    # 0.328 - 0.304 = 0.024 is below the spread measured between runs.
    assert ("Best vs runner-up (base + 100 synthetic): 0.024 AP apart, within the spread"
            in flat(text))
    assert ("moved by up to 0.036 between runs of this demo in a test (base set only 0.100, "
            "0.136)") in flat(text)
    shipped = render_demo_report(README_ROWS)
    assert f"moved by up to {DEMO_SPREAD.ap:.3f} between" in flat(shipped)
    assert "higher is better" in text and "PCK05" in text


def test_next_commands_use_the_invocation_and_name_the_tables() -> None:
    text = render_demo_report(README_ROWS, ".venv/bin/posetune", "posetune-demo/results")
    block = text.split("Next (run from this folder):\n")[1].splitlines()
    commands = [line.strip() for line in block if line.strip() and "#" not in line]
    assert len(commands) == 4
    assert all(line.startswith(".venv/bin/posetune ") for line in commands)
    assert ".venv/bin/posetune table quickstart posetune-demo/results" in commands
    assert (".venv/bin/posetune query posetune-demo/results --sql "
            "'SELECT variant_id, AP, PCK05 FROM trials ORDER BY AP DESC'") in commands
    assert "# SQL over the rows (tables: trials, epochs, all_trials)" in text
    # The seeds sweep goes into the demo's store and resumes it: the demo's 4 trials stay.
    assert (".venv/bin/posetune sweep quickstart --seeds 3 --results posetune-demo/results "
            "--resume") in commands


def test_a_clear_winner_and_a_gain_within_the_spread() -> None:
    rows = [row(0, 0, 0.20), row(0, 100, 0.22), row(40, 0, 0.40), row(40, 100, 0.30)]
    text = render_demo_report(rows, spread=SPREAD)
    assert "Answer: yes. Best: base + 40 real, AP 0.400" in text
    line = next(li for li in text.splitlines() if li.startswith("  base + 100 synthetic "))
    assert line.endswith(" +0.020 AP vs base set only (within the spread)")
    assert ("Best vs runner-up (base + 40 real + 100 synthetic): 0.100 AP apart, more than the "
            "spread: a clear first") in flat(text)
    small = render_demo_report([row(0, 0, 0.20), row(0, 100, 0.22)], spread=SPREAD)
    assert "Answer: not clearly." in small


def test_base_best_and_failed_base() -> None:
    text = render_demo_report([row(0, 0, 0.30), row(40, 0, 0.20)])
    assert "Answer: no. No added images beat the base set alone (AP 0.300)." in text
    failed = render_demo_report([row(0, 0, None, status="failed"), row(40, 0, 0.2)])
    assert "No answer from this run: the base-set-only trial did not finish" in flat(failed)
    assert re.search(r"^base set only +failed +1 +20 +46s$", failed, re.MULTILINE)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "0s"), (46.1, "46s"), (64, "1m04s"), (677.8, "11m18s"), (3725, "1h02m")])
def test_duration_text(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_invocation_is_runnable_from_where_the_user_stands(tmp_path: Path) -> None:
    program = tmp_path / ".venv" / "bin" / "posetune"
    python = "/usr/bin/python3"
    assert invocation(".venv/bin/posetune", None, tmp_path, python) == ".venv/bin/posetune"
    assert invocation(str(program), None, tmp_path, python) == ".venv/bin/posetune"
    assert invocation(str(program), str(program), tmp_path, python) == "posetune"
    assert invocation(str(program), None, Path("/elsewhere"), python) == str(program)
    assert invocation("posetune", None, tmp_path, python) == "./posetune"
    assert invocation("/x/orchestrator/cli/parser.py", None, tmp_path, python) == (
        "/usr/bin/python3 -m orchestrator.cli")


def test_rows_from_a_results_store_and_the_sweep_hint(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.cli.commands import print_results
    from orchestrator.store.query import format_table, query
    from orchestrator.store.results import ResultsStore
    from tests.test_results import make_trial

    store = ResultsStore(str(tmp_path / "results"))
    for i, (real, synthetic, ap) in enumerate([(0, 0, 0.1), (40, 100, 0.5)]):
        store.append_trial(make_trial(experiment="quickstart", variant_id=f"v{i}",
                                      trial_id=f"t{i}", real_count=real,
                                      synthetic_count=synthetic, AP=ap, wall_s=64.4))
    rows = query(store.uri, "SELECT * FROM trials WHERE experiment = 'quickstart'").to_pylist()
    assert "Best: base + 40 real + 100 synthetic, AP 0.500" in render_demo_report(rows)
    print_results(store, "quickstart", format_table)
    out = capsys.readouterr().out
    assert " 0.500 " in out and "0.5000" not in out and re.search(r" 64$", out, re.MULTILINE)
    assert "higher is better" in out
    assert "table quickstart " in out and "# tables: trials, epochs, all_trials" in out
    assert "--sql \"SELECT variant_id, AP FROM trials WHERE experiment = 'quickstart'\"" in out
    # A user's own experiment has no study table: the generic form, which runs.
    print_results(store, "quickstart", format_table, study_table=False)
    assert "-m orchestrator.cli table results --experiment quickstart" in \
        capsys.readouterr().out.replace(str(tmp_path) + "/", "")


def test_demo_command_prints_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``posetune demo`` wiring, with the sweep replaced by a store of finished rows."""
    import orchestrator.run.driver
    from orchestrator.cli import main
    from orchestrator.run.driver import SweepOutcome
    from orchestrator.store.results import ResultsStore
    from tests.test_results import make_trial

    def fake_sweep(experiment: Any, options: Any) -> SweepOutcome:
        store = ResultsStore(options.results)
        for i, (real, synthetic) in enumerate([(0, 0), (0, 100), (40, 0), (40, 100)]):
            store.append_trial(make_trial(experiment=experiment.name, variant_id=f"v{i}",
                                          trial_id=f"t{i}", real_count=real,
                                          synthetic_count=synthetic, AP=0.1 + 0.1 * i))
        return SweepOutcome(store, {"ok": 4})

    monkeypatch.setattr(orchestrator.run.driver, "run_sweep", fake_sweep)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("POSETUNE_DATA", "")  # the demo sets it; restored after the test
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", [".venv/bin/posetune", "demo"])
    assert main(["demo", "--out", "posetune-demo"]) == 0
    out = capsys.readouterr().out
    assert "Answer: yes. Best: base + 40 real + 100 synthetic, AP 0.400" in out
    assert "\n  .venv/bin/posetune table quickstart posetune-demo/results\n" in out


def test_readme_shows_the_next_commands_the_demo_prints() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    printed = "\n".join(next_lines(".venv/bin/posetune", "posetune-demo/results"))
    assert printed + "\n```" in readme, "README's demo report has other Next commands"

"""Experiment files anywhere: `posetune new`, a file path or MODULE:ATTRIBUTE, `list --path`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.study.experiment import expand_stage
from search_spaces import load_experiment

TWO = '''
from orchestrator import Experiment, Grid, Stage
A = Experiment(name="a", description="a", stages=(Stage(axes={"train.lr": Grid(1e-3, 2e-3)}),))
B = Experiment(name="b", description="b", stages=(Stage(),))
'''


def test_new_writes_a_starter_that_loads_and_expands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["new", "my_study.py"]) == 0
    text = (tmp_path / "my_study.py").read_text()
    assert "[datasets.my-species]" in text and "labels =" in text  # the catalog snippet
    experiment = load_experiment("my_study.py")  # relative: resolves against the cwd
    assert experiment.name == "my_study"
    specs = expand_stage(experiment, experiment.final_stage)
    assert sorted(s.variant_id for s in specs) == ["lr=0.0005", "lr=0.002"]
    assert main(["new", "my_study.py"]) == 2  # never overwrites silently
    assert "--force" in capsys.readouterr().err
    # With --data the starter trains on the user's catalog entry and keeps its whole test set
    # at --smoke (a per-scale change).
    assert main(["new", "mouse_study.py", "--data", "mouse"]) == 0
    mouse = load_experiment("mouse_study.py")
    assert mouse.scale_changes("smoke") == {"data.max_test": None}


def test_file_and_module_attribute_forms(tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(TWO)
    assert load_experiment(f"{tmp_path / 'two.py'}:B").name == "b"
    assert load_experiment("search_spaces.quickstart:EXPERIMENT").name == "quickstart"
    with pytest.raises(ValueError, match=r"several \(A, B\).*FILE:ATTRIBUTE"):
        load_experiment(str(tmp_path / "two.py"))
    (tmp_path / "none.py").write_text("X = 1\n")
    with pytest.raises(ValueError, match="defines none module-level Experiment"):
        load_experiment(str(tmp_path / "none.py"))
    with pytest.raises(ValueError, match="X is not an Experiment"):
        load_experiment(f"{tmp_path / 'none.py'}:X")
    with pytest.raises(ValueError, match="not found .*current directory"):
        load_experiment("missing_study.py")


def test_list_path_and_sweep_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new", str(tmp_path / "study_a.py")]) == 0
    assert main(["new", str(tmp_path / "study_b.py")]) == 0
    capsys.readouterr()
    assert main(["list", "--path", str(tmp_path), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["trials"]) for r in rows] == [("study_a", 2), ("study_b", 2)]
    (tmp_path / "two.py").write_text(TWO)
    code = main(["sweep", str(tmp_path / "two.py")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "several" in err


def test_list_path_never_runs_other_scripts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A helper script beside the experiments is parsed, never run (it would make a folder)."""
    assert main(["new", str(tmp_path / "study_a.py")]) == 0
    (tmp_path / "helper.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('ran').mkdir()\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    (tmp_path / "built.py").write_text("from helpers import make\nEXPERIMENT = make()\n")
    capsys.readouterr()
    assert main(["list", "--path", str(tmp_path), "--json"]) == 2  # built.py is loaded: fails
    assert "helpers" in capsys.readouterr().err
    (tmp_path / "built.py").unlink()
    assert main(["list", "--path", str(tmp_path), "--json"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["study_a"]
    assert not (tmp_path / "ran").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["list", "--path", str(empty)]) == 2
    assert "no experiment files in" in capsys.readouterr().err


def test_new_refuses_a_shipped_experiments_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["new", str(tmp_path / "quickstart.py")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "'quickstart' is the name of a shipped experiment" in err and "my_quickstart.py" in err
    assert not (tmp_path / "quickstart.py").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_starter_smoke_sweep_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    from orchestrator.run.driver import run_sweep
    from orchestrator.study.trials import SweepOptions

    monkeypatch.setenv("POSETUNE_DATA", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    assert main(["new", "my_study.py"]) == 0
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        store = run_sweep(load_experiment("my_study.py"),
                          SweepOptions(results=str(tmp_path / "runs"), smoke=True)).store
    finally:
        ray.shutdown()
    rows = store.read_trials().to_pylist()
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows), rows
    assert os.path.isdir(tmp_path / "data")

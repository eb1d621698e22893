"""The training identity covers exactly the code a trial's training runs: TRAINING_MODULES
equals the pose_core and orchestrator.data modules the worker's entry reaches (imports inside
functions count), a real training step imports nothing outside it, and the digest follows
those files only."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from orchestrator.study.trials import TRAINING_MODULES, code_digest, module_source, source_digest
from tests.test_architecture import REPO, graph

ENTRY = "orchestrator.run.worker"


def reached_from(entry: str) -> set[str]:
    edges = graph()
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += edges[name]
    return seen


# The packages whose modules decide what a trial trains: the pose library, and the data layer
# that reads, converts, generates and assembles its images and labels on the node.
TRAINING_PACKAGES = ("pose_core.", "orchestrator.data.")


def test_training_modules_are_the_modules_the_worker_reaches() -> None:
    reached = reached_from(ENTRY)
    listed = set(TRAINING_MODULES)
    assert len(listed) == len(TRAINING_MODULES), "a module is listed twice"
    training = {name for name in reached if name.startswith(TRAINING_PACKAGES)}
    missing, extra = sorted(training - listed), sorted(listed - training)
    assert (missing, extra) == ([], []), (
        f"TRAINING_MODULES in orchestrator/study/trials.py is out of date: add {missing}, "
        f"remove {extra}")
    assert "orchestrator.data.trialdata" in listed and "pose_core.loop" in listed
    assert all(module_source(name).is_file() for name in TRAINING_MODULES)


def test_a_training_step_imports_no_pose_core_module_outside_the_list(tmp_path: Path) -> None:
    """What one real epoch imports (the static walk could miss a dynamic import)."""
    script = textwrap.dedent(f"""
        import json, sys
        import torch
        from orchestrator.run.worker import TuneSession
        from pose_core.config import TrialConfig, with_values
        from pose_core.loop import train_trial
        from pose_core.readers import read_coco
        from pose_core.synth import SynthConfig, generate

        class Session(TuneSession):
            def device(self):
                return torch.device("cpu")

        generate({str(tmp_path)!r}, SynthConfig(images=10, seed=1, workers=1, width=96,
                                                 height=96))
        instances, skeleton, _ = read_coco({str(tmp_path / "annotations.json")!r})
        cfg = with_values(TrialConfig(), {{
            "model.backbone": "hrnet_w18_small", "model.init": "random",
            "data.input_size": 64, "data.loader_workers": 0, "train.batch_size": 4,
            "train.epochs": 1, "train.bf16": False, "train.warmup_iters": 1}})
        reports = []
        train_trial(cfg, instances[:8], instances[8:], skeleton,
                    Session({str(tmp_path / "ckpt")!r}, report_to=reports.append))
        assert reports and reports[-1]["epoch"] == 1, reports
        print(json.dumps(sorted(n for n in sys.modules if n.startswith("pose_core."))))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                         text=True, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    imported = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert {"pose_core.loop", "pose_core.models", "pose_core.metrics"} <= imported
    assert sorted(imported - set(TRAINING_MODULES)) == []


def test_the_digest_follows_the_training_modules_only(tmp_path: Path) -> None:
    for name in TRAINING_MODULES:
        source = module_source(name)
        copy = tmp_path / source.relative_to(REPO)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(source.read_bytes())
    assert source_digest(tmp_path) == code_digest()
    # a module the training does not run is not part of the identity
    assert "pose_core.keypoint_table" not in TRAINING_MODULES
    (tmp_path / "pose_core" / "keypoint_table.py").write_text("# edited\n")
    assert source_digest(tmp_path) == code_digest()
    loop = module_source("pose_core.loop", tmp_path)
    loop.write_text(loop.read_text() + "\n")
    assert source_digest(tmp_path) != code_digest()

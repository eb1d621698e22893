"""The one training loop: exact resume through the Tune runner's session, torch.compile, and
every config field read by the code it claims to control."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from orchestrator.data.catalog import Catalog, DatasetEntry
from orchestrator.data.trialdata import assemble
from orchestrator.run.worker import TuneSession, resolve_weights
from pose_core import config as config_module
from pose_core.config import TrialConfig, with_values
from pose_core.loop import fit, train_trial
from pose_core.model_info import model_info
from pose_core.models import build_model
from pose_core.readers import read_coco

SMALL = with_values(TrialConfig(), {
    "model.backbone": "hrnet_w18_small", "model.init": "random", "data.input_size": 64,
    "data.loader_workers": 0, "train.batch_size": 8, "train.lr": 2e-3,
    "train.warmup_iters": 5, "train.bf16": False, "eval.interval": 10,
})


@pytest.fixture(scope="module")
def data(synth_dir: Path) -> tuple[Any, Any, Any]:
    instances, skeleton, _ = read_coco(synth_dir / "annotations.json")
    return instances[:32], instances[40:48], skeleton


class CpuTuneSession(TuneSession):
    """The Tune runner's session outside Ray: reports go to a list; ``kill_after`` raises
    after that many reports, as a killed trial process would stop."""

    def __init__(self, uri: str, kill_after: int | None = None) -> None:
        self.reports: list[dict[str, Any]] = []
        self.kill_after = kill_after
        super().__init__(uri, report_to=self._keep)

    def _keep(self, metrics: dict[str, Any]) -> None:
        self.reports.append(metrics)
        if self.kill_after is not None and len(self.reports) >= self.kill_after:
            raise SystemExit("killed")

    def device(self) -> torch.device:
        return torch.device("cpu")


def test_exact_resume_through_the_tune_runner_session(data: tuple[Any, Any, Any],
                                                      tmp_path: Path) -> None:
    train, test, skeleton = data
    cfg = with_values(SMALL, {"train.epochs": 3, "data.augment": "all"})
    straight = CpuTuneSession(str(tmp_path / "a"))
    reference = train_trial(cfg, train, test, skeleton, straight)
    killed = CpuTuneSession(str(tmp_path / "b"), kill_after=2)
    with pytest.raises(SystemExit):
        train_trial(cfg, train, test, skeleton, killed)
    resumed = CpuTuneSession(str(tmp_path / "b"))
    trial = train_trial(cfg, train, test, skeleton, resumed)
    assert [r["epoch"] for r in resumed.reports] == [3] and resumed.restarted
    assert resumed.reports[0]["loss"] == straight.reports[2]["loss"]
    assert resumed.reports[0]["checkpoint_path"] == str(tmp_path / "b")
    a, b = reference.model.state_dict(), trial.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A rerun of the finished trial reports its last epoch again and trains nothing.
    again = CpuTuneSession(str(tmp_path / "b"))
    train_trial(cfg, train, test, skeleton, again)
    assert [r["epoch"] for r in again.reports] == [3]
    assert again.reports[0]["AP"] == resumed.reports[0]["AP"]


def test_compile_trains_two_steps_on_cpu(data: tuple[Any, Any, Any]) -> None:
    """``train.compile`` is real: the loop trains a torch.compile'd model (CPU inductor)."""
    import torch._dynamo

    train, test, skeleton = data
    cfg = with_values(SMALL, {"model.backbone": "convnext_atto", "train.compile": True,
                              "train.epochs": 1, "train.batch_size": 4})
    torch._dynamo.reset()
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    trial = fit(cfg, train[:8], test[:4], skeleton)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > before
    assert trial.epoch == 1 and trial.history[-1]["loss"] > 0
    torch._dynamo.reset()


def _field_reads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Record each config field read outside config.py and dataclasses' own helpers
    (``asdict``, ``replace``, generated ``__eq__``): reads by the code that uses it."""
    reads: set[str] = set()
    sections = {f.name: f.type for f in dataclasses.fields(TrialConfig)}
    skip = (config_module.__file__, dataclasses.__file__, "<string>", __file__)
    for section in ("data", "model", "train", "eval"):
        cls = getattr(config_module, f"{section.capitalize()}Config")
        names = {f.name for f in dataclasses.fields(cls)}

        def traced(self: Any, name: str, _names: set[str] = names,
                   _section: str = section) -> Any:
            if name in _names and sys._getframe(1).f_code.co_filename not in skip:
                reads.add(f"{_section}.{name}")
            return object.__getattribute__(self, name)

        monkeypatch.setattr(cls, "__getattribute__", traced)
    assert set(sections) == {"data", "model", "train", "eval"}
    return reads


def test_every_config_field_is_read_by_the_code_it_controls(
    synth_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """A config field that nothing reads is a stub (STYLE 17): this fails for a new field
    until the data assembly, the loop, the model builders or evaluation read it."""
    entry = {"coco": str(synth_dir / "annotations.json")}
    catalog = Catalog({name: DatasetEntry(name, **entry) for name in ("b", "r", "s", "t")},
                      data_dir=str(tmp_path))
    cfg = with_values(SMALL, {
        "data.base": "b", "data.base_count": 12, "data.real": "r", "data.real_count": 4,
        "data.synthetic": "s", "data.synthetic_count": 4, "data.test": "t", "data.max_test": 4,
        "train.epochs": 1, "train.batch_size": 4,
    })
    (tmp_path / "x.pt").write_bytes(b"")
    reads = _field_reads(monkeypatch)
    resolve_weights(with_values(cfg, {"model.init": "checkpoint",
                                      "model.weights": str(tmp_path / "x.pt")}), catalog)
    data = assemble(cfg, catalog)
    fit(cfg, data.train, data.test, data.skeleton)
    kit = with_values(cfg, {"model.head": "kitpose", "model.kit_dim": 32})
    build_model(kit.model, data.skeleton.num_keypoints, kit.data.input_size)
    model_info(cfg.model, data.skeleton.num_keypoints, cfg.data.input_size)
    every = set(TrialConfig().flat())
    assert every - reads == set(), f"config fields read nowhere: {sorted(every - reads)}"

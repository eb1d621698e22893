"""``posetune export`` of a real smoke sweep (quickstart --smoke on local Ray): the best trial's
ONNX and torch.export files, their metadata, the parity check against PyTorch, and the
refusals (unknown trial, failed trial, missing or unreadable checkpoint) that leave nothing
behind. KITPose, which ``torch.export`` cannot capture, falls back without Ray."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from orchestrator.cli import main
from orchestrator.store.results import ResultsStore
from orchestrator.store.schema import TrialRecord

METADATA = {"posetune_version", "input", "output", "keypoint_names", "skeleton", "flip_pairs",
            "sigma_set", "sigmas", "trial", "model"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> str:
    import ray

    from orchestrator.run.driver import run_sweep
    from orchestrator.study.trials import SweepOptions
    from search_spaces import load_experiment

    uri = str(tmp_path_factory.mktemp("export") / "results")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_sweep(load_experiment("quickstart"), SweepOptions(results=uri, smoke=True),
                            lambda line: None)
    finally:
        ray.shutdown()
    assert outcome.exit_code == 0, outcome.failures
    return uri


def rows_of(uri: str) -> list[dict[str, Any]]:
    return ResultsStore(uri).read_trials().to_pylist()


@pytest.fixture(scope="module")
def exported(results: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The best quickstart trial exported once (``posetune export``) and what it printed."""
    out = tmp_path_factory.mktemp("export") / "model"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", results, "--experiment", "quickstart", "--out", str(out)]) == 0
    return out, printed.getvalue()


@pytest.mark.slow
@pytest.mark.ray
def test_export_of_the_best_trial_passes_parity(
    results: str, exported: tuple[Path, str]
) -> None:
    import onnx
    import onnxruntime

    out, printed = exported
    assert "parity on" in printed and "passed" in printed
    assert sorted(p.name for p in out.iterdir()) == [
        "model.json", "model.onnx", "model.pt2", "parity.json"]
    assert not list(out.parent.glob(".model.tmp-*"))

    # the best variant by mean AP over seeds (ties: any of the tied ones)
    rows = [r for r in rows_of(results) if r["status"] == "ok"]
    means: dict[str, list[float]] = {}
    for row in rows:
        means.setdefault(row["variant_id"], []).append(row["AP"])
    info = json.loads((out / "model.json").read_text())
    best = max(float(np.mean(v)) for v in means.values())
    assert float(np.mean(means[info["trial"]["variant_id"]])) == best
    row = next(r for r in rows if r["trial_id"] == info["trial"]["trial_id"])

    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] is True and parity["instances"] > 0
    assert 0 <= parity["max_abs_diff"] < 1e-3
    assert abs(parity["ap_onnx"] - parity["ap_pytorch"]) <= 0.001
    assert parity["ap_row"] == row["AP"] and abs(parity["ap_pytorch"] - row["AP"]) <= 0.001

    proto = onnx.load(str(out / "model.onnx"))
    metadata = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert METADATA <= set(metadata)
    assert metadata["keypoint_names"] == row["keypoint_names"] == info["keypoint_names"]
    assert metadata["input"]["channel_order"] == "RGB" and len(metadata["input"]["mean"]) == 3
    assert all(len(pair) == 2 for pair in metadata["flip_pairs"] + metadata["skeleton"])
    assert metadata["sigma_set"] == row["sigma_set"]
    assert len(metadata["sigmas"]) == len(row["keypoint_names"])
    assert info["onnx_exporter"] in ("dynamo", "torchscript")
    assert info["pytorch_format"] == "torch.export"  # HRNet: torch.export captures it

    size = metadata["input"]["shape"][-1]
    images = np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    (heatmaps,) = session.run(None, {"images": images})  # batch 3: the batch axis is dynamic
    assert heatmaps.shape == (3, len(row["keypoint_names"]), size // 4, size // 4)
    program = torch.export.load(str(out / "model.pt2")).module()
    expected = program(torch.from_numpy(images)).detach().numpy()
    assert np.abs(expected - heatmaps).max() < 1e-3


@pytest.mark.slow
@pytest.mark.ray
def test_predict_with_the_exported_model_matches_its_checkpoint(
    exported: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.test_predict_video import write_clip

    out, _ = exported
    checkpoint = json.loads((out / "model.json").read_text())["trial"]["checkpoint_uri"]
    video = tmp_path / "clip.mp4"
    boxes = write_clip(video, 12)
    (tmp_path / "boxes.csv").write_text("# video: clip.mp4\nframe,x,y,w,h\n" + "".join(
        f"{n},{','.join(str(v) for v in box)}\n" for n, box in enumerate(boxes)))
    poses = {}
    for flag, model in (("--checkpoint", checkpoint), ("--model", str(out / "model.onnx"))):
        target = tmp_path / f"{flag[2:]}.json"
        assert main(["predict", flag, model, "--video", str(video), "--boxes",
                     str(tmp_path / "boxes.csv"), "--device", "cpu", "--out", str(target)]) == 0
        poses[flag] = [np.array(p["keypoints"]).reshape(-1, 3)
                       for p in json.loads(target.read_text())]
    capsys.readouterr()
    assert len(poses["--model"]) == len(poses["--checkpoint"]) == 12
    for a, b in zip(poses["--checkpoint"], poses["--model"], strict=True):
        assert np.abs(a[:, :2] - b[:, :2]).max() < 0.05 and np.abs(a[:, 2] - b[:, 2]).max() < 1e-3


def bad_row(row: dict[str, Any], seed: int, **changes: Any) -> TrialRecord:
    fields = {f.name for f in dataclasses.fields(TrialRecord)}
    values = {k: v for k, v in row.items() if k in fields}
    values.update({"seed": seed, "trial_id": f"bad_{seed}", "AP": None,
                   "ended_at": row["ended_at"] + timedelta(seconds=seed)})
    values.update(changes)
    return TrialRecord(**values)


@pytest.mark.slow
@pytest.mark.ray
def test_bad_trials_are_refused_and_leave_nothing(
    results: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    row = next(r for r in rows_of(results) if r["status"] == "ok")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(row["checkpoint_uri"], corrupt)
    whole = (corrupt / "checkpoint.pt").read_bytes()
    (corrupt / "checkpoint.pt").write_bytes(whole[: len(whole) // 3])
    store = ResultsStore(results)
    store.append_trial(bad_row(row, 7, status="failed", error="CUDA out of memory\nmore"))
    store.append_trial(bad_row(row, 8, checkpoint_uri=str(tmp_path / "gone")))
    store.append_trial(bad_row(row, 9, checkpoint_uri=str(corrupt)))
    out = tmp_path / "out"
    cases = {
        "nope": "no trial 'nope' in experiment 'quickstart'",
        "bad_7": "trial bad_7 failed (CUDA out of memory): only a trial that finished ok",
        "bad_8": "trial bad_8 (" + row["variant_id"] + ", seed 8): checkpoint ",
        "bad_9": "trial bad_9 (" + row["variant_id"] + ", seed 9): checkpoint ",
    }
    for trial, message in cases.items():
        code = main(["export", results, "--experiment", "quickstart", "--trial", trial,
                     "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2, (trial, err)
        assert len(err.strip().splitlines()) == 1 and message in err, (trial, err)
        assert "does not load" in err or trial in ("nope", "bad_7")
        assert not out.exists() and not list(tmp_path.glob(".out.tmp-*"))
    # the bad rows have no AP: the default (best) export still picks a real trial
    assert main(["export", results, "--experiment", "quickstart", "--trial",
                 row["trial_id"], "--out", str(out)]) == 0
    assert json.loads((out / "model.json").read_text())["trial"]["trial_id"] == row["trial_id"]
    code = main(["export", results, "--experiment", "quickstart", "--out", str(out)])
    assert code == 2 and "exists and is not an empty folder" in capsys.readouterr().err

    # a row whose AP the checkpoint does not reproduce: exit 3, written, marked failed
    store.append_trial(bad_row(row, 10, AP=row["AP"] + 0.5))
    code = main(["export", results, "--experiment", "quickstart", "--trial", "bad_10",
                 "--out", str(tmp_path / "off")])
    assert code == 3
    assert "differs from the trial row's AP" in capsys.readouterr().out
    parity = json.loads((tmp_path / "off" / "parity.json").read_text())
    assert parity["passed"] is False and parity["ap_row"] == row["AP"] + 0.5
    assert (tmp_path / "off" / "model.onnx").is_file()


def test_kitpose_falls_back_to_traced_exports(tmp_path: Path) -> None:
    import onnxruntime

    from orchestrator.infer.export import Heatmaps, export_onnx, export_program
    from pose_core.config import TrialConfig, with_values
    from pose_core.models import build_model

    cfg = with_values(TrialConfig(), {"model.backbone": "test_resnet", "model.head": "kitpose",
                                      "model.init": "random", "data.input_size": 64})
    network = Heatmaps(build_model(cfg.model, 5, 64)).eval()
    exporter = export_onnx(network, 64, tmp_path / "model.onnx", {"keypoint_names": ["a"]})
    name, kind = export_program(network, 64, tmp_path)
    assert exporter == "torchscript" and (name, kind) == ("model.torchscript.pt", "torchscript")
    images = torch.randn(3, 3, 64, 64)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map == {"keypoint_names": '["a"]'}
    (onnx_out,) = session.run(None, {"images": images.numpy()})
    with torch.no_grad():
        expected = network(images).numpy()
        traced = torch.jit.load(str(tmp_path / name))(images).numpy()
    assert np.abs(onnx_out - expected).max() < 1e-4 and np.abs(traced - expected).max() < 1e-5

"""The posetune CLI: eval, model-info, data, list, and bad input as one clear line (exit 2).

None of these start Ray: every configuration error must fail before a cluster is touched.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from orchestrator.cli import main
from tests.test_readers import _lynx_csv


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_json_matches_the_metrics_module(shared_data: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from pose_core.metrics import evaluate_files

    gt_path = shared_data / "animalpose" / "annotations.json"
    gt = json.loads(gt_path.read_text())
    rng = np.random.default_rng(0)
    preds = []
    for ann in gt["annotations"]:
        points = np.asarray(ann["keypoints"], dtype=float).reshape(-1, 3)
        points[:, :2] += rng.normal(0, 3, size=(len(points), 2))
        points[:, 2] = 0.9
        preds.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                      "keypoints": points.reshape(-1).tolist(), "score": 0.9})
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps(preds))
    code, out, _ = run(capsys, "eval", "--gt", str(gt_path), "--pred", str(pred_path), "--json")
    assert code == 0
    values = json.loads(out)
    assert {"AP", "AP50", "AP75", "AP85", "AR", "PCK05"} <= set(values)
    direct = evaluate_files(gt_path, pred_path, sigmas="animalpose").as_dict()
    assert all(values[k] == direct[k] for k in ("AP", "AP75", "AP85", "PCK05"))
    assert values["sigma_set"] == "animalpose" and values["pck_normaliser"] == "bbox"
    code, out, _ = run(capsys, "eval", "--gt", str(gt_path), "--pred", str(pred_path))
    assert code == 0 and "AP85" in out and "area rule given" in out


def test_eval_wrong_length_sigma_file_is_one_line(shared_data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    gt = shared_data / "animalpose" / "annotations.json"
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([
        {"image_id": a["image_id"], "category_id": a["category_id"], "keypoints": a["keypoints"],
         "score": 1.0} for a in json.loads(gt.read_text())["annotations"]]))
    sigmas = tmp_path / "sigmas.json"
    sigmas.write_text(json.dumps([0.1] * 17))
    code, _, err = run(capsys, "eval", "--gt", str(gt), "--pred", str(pred), "--sigmas", str(sigmas))
    assert code == 2
    assert err.count("\n") == 1 and "17" in err and "20" in err


def test_model_info_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "model-info", "--backbone", "hrnet_w32", "--input", "256", "--json")
    assert code == 0
    info = json.loads(out)
    assert abs(info["params_m"] - 28.5) / 28.5 < 0.03  # the published pose HRNet-w32
    assert info["gflops"] > 15 and info["heatmap_shape"][-2:] == [64, 64]


def test_data_synth_and_convert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "data", "synth", "--out", str(tmp_path / "s"), "--images", "6",
                       "--seed", "3", "--style", "camera-trap")
    assert code == 0
    data = json.loads(Path(out.strip()).read_text())
    assert len(data["images"]) == 6 and len(data["categories"][0]["keypoints"]) == 20
    csv = _lynx_csv(tmp_path)
    target = tmp_path / "lynx.json"
    code, out, err = run(capsys, "data", "convert", "czechlynx", str(csv), "--out", str(target))
    assert code == 0 and "kept" in err
    coco = json.loads(target.read_text())
    assert coco["annotations"] and len(coco["categories"][0]["keypoints"]) == 20


def test_list_json_has_every_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["two_stage"]["trials"] == 5
    assert [s["name"] for s in rows["two_stage"]["stages"]] == ["stage1", "stage2"]
    assert rows["quickstart"]["trials"] == 4


@pytest.mark.parametrize(("argv", "expected"), [
    (["sweep", "nope"], "unknown experiment 'nope'"),
    (["sweep", "quickstart", "--set", "train.lrr=1"], "unknown key 'lrr'"),
    (["sweep", "quickstart", "--set", "train.epochs=abc"], "expected an integer"),
    (["sweep", "quickstart", "--set", "data.augment=sparkles"], "is not one of"),
    (["sweep", "quickstart", "--set", "model.init=checkpoint",
      "--set", "model.weights=/nonexistent/ckpt.pt"], "no such file"),
    (["sweep", "quickstart", "--set", "data.test=lynx-elsewhere"], "[datasets.lynx-elsewhere]"),
    (["sweep", "quickstart", "--catalog", "{catalog}"], "has only 2"),
    (["sweep", "quickstart", "--set", "eval.sigmas=uniform:-1"], "sigma"),
    (["sweep", "quickstart", "--results", "/proc/posetune-cannot-write"], "/proc/posetune"),
    (["sweep", "quickstart", "--set", "model.init=imagenet"], "offline and the hub cache"),
])
def test_bad_configuration_fails_before_the_sweep(
    argv: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    monkeypatch.chdir(tmp_path)  # default results go to ./runs/...
    catalog = tmp_path / "catalog.toml"  # lynx-train -> a real 2-image Animal-Pose set
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "animalpose"
    catalog.write_text(f'[datasets.lynx-train]\ncoco = "{real}/annotations.json"\n'
                       f'images = "{real}/images"\n')
    if "{catalog}" in argv and not real.is_dir():
        pytest.skip("shared real data not available")
    code, out, err = run(capsys, *[a.replace("{catalog}", str(catalog)) for a in argv])
    assert code == 2, (out, err)
    assert expected in err and err.startswith("posetune: error:")
    assert err.count("\n") == 1  # one clear line, no traceback
    assert not ray.is_initialized()  # failed before any cluster was started


def test_bad_dataset_stops_the_sweep_before_any_training(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray

    monkeypatch.chdir(tmp_path)
    source = shared_data / "animalpose"
    data = json.loads((source / "annotations.json").read_text())
    bad = data["annotations"][1]
    bad["keypoints"] = bad["keypoints"][:57]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    (tmp_path / "catalog.toml").write_text(
        f'[datasets.lynx-test]\ncoco = "{tmp_path}/bad.json"\nimages = "{source}/images"\n')
    code, _, err = run(capsys, "sweep", "quickstart", "--catalog", str(tmp_path / "catalog.toml"))
    assert code == 2 and err.count("\n") == 1
    assert f"bad.json: annotation id {bad['id']}" in err and "field 'keypoints'" in err
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()

"""The generated-pretrained start (pose_core.pretrain, orchestrator.data.pretrained,
orchestrator.plan.pretraining): cached once per machine, reused, rebuilt when its recipe
changes, an unreadable file replaced; it loads into the pose model, tables name it as the
stand-in for ImageNet, ``--plan`` lists it, and ``posetune pretrain`` builds it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.data.pretrained import LABEL, local_start, parse, readable
from orchestrator.plan.cost import StagePlan, SweepPlan, render
from orchestrator.plan.pretraining import ensure_start, scale_backbones
from orchestrator.report.tables import start
from orchestrator.study.scale import get_scale
from pose_core.config import ModelConfig
from pose_core.models import build_model, init_weights
from pose_core.pretrain import RECIPES
from pose_core.pretrain.fractals import STRIDE, dataset
from pose_core.pretrain.recipe import start_marker

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "test_resnet"  # timm's tiny test model: the cache logic, in a second


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("POSETUNE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_fractal_mosaics_are_deterministic_and_labelled_per_cell() -> None:
    recipe = RECIPES["smoke"]
    images, labels = dataset(recipe)
    size, cells = recipe.image_size, recipe.image_size // STRIDE
    assert images.shape == (recipe.images, size, size, 3)
    assert labels.shape == (recipe.images, cells, cells)
    assert labels.min() >= 0 and labels.max() <= recipe.categories  # 0: background
    assert ((labels > 0).any(axis=(1, 2))).all()  # every image shows a fractal
    assert ((labels == 0).any(axis=(1, 2))).any()  # and background somewhere
    # a labelled cell is painted brighter than the dark background field (<= 110 + noise)
    bright = images.max(axis=3).reshape(recipe.images, cells, STRIDE, cells, STRIDE)
    assert (bright.max(axis=(2, 4))[labels > 0] >= 120).all()
    again, same = dataset(recipe)
    assert (again == images).all() and (same == labels).all()


def test_start_is_reused_rebuilt_on_recipe_change_and_replaced_when_unreadable(
        cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ARG001 (cache: the env)
    lines: list[str] = []
    path, built = ensure_start("smoke", BACKBONE, lines.append)
    assert built and path.parent == cache / "starts" and readable(parse(
        start_marker("smoke", BACKBONE)))
    stamp = path.stat().st_mtime_ns
    again, built = ensure_start("smoke", BACKBONE, lines.append)
    assert (again, built, again.stat().st_mtime_ns) == (path, False, stamp)
    assert "cached" in lines[-1]

    changed = dataclasses.replace(RECIPES["smoke"], steps=RECIPES["smoke"].steps + 1)
    with monkeypatch.context() as patch:
        patch.setitem(RECIPES, "smoke", changed)
        rebuilt, built = ensure_start("smoke", BACKBONE, lines.append)
    assert built and rebuilt != path  # another digest, another file

    path.write_bytes(b"not a safetensors file")
    lines.clear()
    replaced, built = ensure_start("smoke", BACKBONE, lines.append)
    assert replaced == path and built and "unreadable; replacing it" in lines[0]
    assert local_start(start_marker("smoke", BACKBONE)) == str(path)


def test_a_trial_without_the_start_names_the_command_that_builds_it(cache: Path) -> None:
    with pytest.raises(FileNotFoundError, match="posetune pretrain --scale smoke --backbone"):
        local_start(start_marker("smoke", BACKBONE))


def test_the_start_loads_every_backbone_tensor_into_the_pose_model(cache: Path) -> None:
    path, _ = ensure_start("smoke", "resnet18", lambda line: None)
    cfg = ModelConfig(backbone="resnet18", init="imagenet", weights=str(path))
    model = build_model(cfg, 4, 64)
    line = init_weights(model, cfg, ["a", "b", "c", "d"])
    total = len(model.backbone.state_dict())
    assert f"loaded {total}/{total} backbone tensors" in line


def test_tables_name_the_start_as_the_stand_in_for_imagenet() -> None:
    row = {"init": "imagenet", "init_checkpoint": None,
           "_config": {"model": {"weights": start_marker("mini", "hrnet_w18_small")}}}
    assert start(row, {}) == LABEL == "generated-pretrained start (stand-in for ImageNet)"
    assert start({**row, "_config": {"model": {"weights": None}}}, {}) == "ImageNet"


def test_plan_lists_the_starts_to_build() -> None:
    plan = SweepPlan("x", "mini", [StagePlan("main", 1, 10)],
                     starts=["hrnet_w18_small (mini recipe): ..."])
    text = render(plan)
    assert "1 generated-pretrained start(s) to build" in text and "hrnet_w18_small" in text


def test_scale_backbones() -> None:
    assert scale_backbones(get_scale("smoke")) == ["hrnet_w18_small"]
    assert scale_backbones(get_scale("mini")) == [
        "hrnet_w18_small", "hrnet_w18_small_v2", "resnet18", "resnet26", "resnet34"]


def test_pretrain_command_as_the_readme_shows_it() -> None:
    command = [sys.executable, "-m", "orchestrator.cli", "pretrain", "--scale", "smoke"]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "cached" in again.stdout
    full = subprocess.run([*command[:-1], "full"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert full.returncode == 2

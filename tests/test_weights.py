"""ImageNet weights as users expect (orchestrator.data.weights, pose_core.models): a catalog file,
else timm's pretrained weights through the hub cache, checked offline with a cache the test
writes (HF_HUB_OFFLINE=1, so the real hub code runs and nothing is downloaded)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orchestrator.data.weights import WeightsError, check_weights_source, local_weights
from pose_core.models import TIMM_PRETRAINED, create_backbone

REPO = Path(__file__).resolve().parents[1]
HUB_ID = "timm/test_resnet.r160_in1k"

# Runs in a fresh interpreter: huggingface_hub reads HF_HUB_CACHE/HF_HUB_OFFLINE on import.
HUB_SCRIPT = '''
import sys, torch, timm
from safetensors.torch import save_file
from orchestrator.data.weights import WeightsError, check_weights_source, local_weights
from pose_core.config import ModelConfig
from pose_core.models import TIMM_PRETRAINED, build_model, init_weights

snapshot = sys.argv[1]
classifier = timm.create_model("test_resnet", pretrained=False)
torch.manual_seed(7)
state = {k: torch.randn_like(v) if v.is_floating_point() else v
         for k, v in classifier.state_dict().items()}
save_file(state, snapshot + "/model.safetensors")
print("CHECK", check_weights_source("test_resnet", None, online=False))
assert local_weights("test_resnet", None) == TIMM_PRETRAINED
cfg = ModelConfig(backbone="test_resnet", init="imagenet", weights=TIMM_PRETRAINED)
model = build_model(cfg, num_keypoints=3, input_size=64)
print("INIT", init_weights(model, cfg, ["a", "b", "c"]))
assert torch.equal(model.backbone.state_dict()["conv1.0.weight"], state["conv1.0.weight"])
try:
    check_weights_source("resnet18", None, online=False)
except WeightsError as error:
    print("MISSING", error)
'''


def test_hub_cache_path_offline(tmp_path: Path) -> None:
    cache = tmp_path / "hf" / "hub"
    repo = cache / ("models--" + HUB_ID.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": str(REPO)}
    env.pop("HF_HUB_CACHE", None)
    out = subprocess.run([sys.executable, "-c", HUB_SCRIPT, str(snapshot)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert f"timm's pretrained {HUB_ID} from the hub cache" in lines["CHECK"]
    assert "init imagenet from timm's pretrained test_resnet (hub cache)" in lines["INIT"]
    missing = lines["MISSING"]
    assert "offline" in missing and "[weights]" in missing and "hf download" in missing


def test_catalog_file_is_checked_and_used(tmp_path: Path) -> None:
    from orchestrator.data.catalog import Catalog

    good = tmp_path / "test_resnet.pth"
    torch.save(create_backbone("test_resnet").state_dict(), good)
    bad = tmp_path / "other.pth"
    torch.save({"unrelated.weight": torch.zeros(3)}, bad)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[weights]\ntest_resnet = "{good}"\nresnet18 = "{bad}"\n'
                       f'resnet34 = "{tmp_path / "gone.pth"}"\n')
    assert "tensors fit" in check_weights_source("test_resnet", str(catalog), online=False)
    assert local_weights("test_resnet", Catalog.from_file(catalog)) == str(good)
    with pytest.raises(WeightsError, match="none of its 1 tensors fits"):
        check_weights_source("resnet18", str(catalog))
    with pytest.raises(WeightsError, match="no such file"):
        check_weights_source("resnet34", str(catalog))
    assert local_weights("resnet50", str(catalog)) == TIMM_PRETRAINED  # not named: the hub

"""Pose models: every backbone x head forward/backward, parameter counts, initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from torch import nn

from pose_core.config import HeadName, InitName, ModelConfig
from pose_core.models import HeatmapHead, PoseModel, build_model, init_weights, read_state_dict
from pose_core.skeletons import ANIMALPOSE, AP10K, keypoint_mapping

FAST = ["hrnet_w18_small", "resnet50", "convnext_atto"]
SLOW = ["hrnet_w32", "hrnet_w48", "resnet101", "resnet152"]
BACKBONES = [*FAST, *(pytest.param(name, marks=pytest.mark.slow) for name in SLOW)]

# Published parameter counts (HRNet README / SimpleBaseline, COCO K=17) in millions.
PUBLISHED = {"hrnet_w32": 28.5, "hrnet_w48": 63.6, "resnet50": 34.0, "resnet101": 53.0,
             "resnet152": 68.6}  # fmt: skip


def small_cfg(
    backbone: str, head: HeadName = "heatmap", init: InitName = "random", weights: str | None = None
) -> ModelConfig:
    """A model config with a small KIT (dim 32) so CPU tests stay fast."""
    return ModelConfig(backbone, head, init, weights, kit_dim=32, kit_depth=2, kit_parts=3)


def heatmap_head(model: PoseModel) -> HeatmapHead:
    assert isinstance(model.head, HeatmapHead)
    return model.head


@pytest.mark.parametrize("head", ["heatmap", "kitpose"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_backward_every_parameter_gets_a_gradient(backbone: str, head: HeadName) -> None:
    torch.manual_seed(0)
    model = build_model(small_cfg(backbone, head), num_keypoints=5, input_size=64)
    out = model(torch.randn(2, 3, 64, 64))
    assert out["heatmaps"].shape == (2, 5, 16, 16)
    assert ("aux" in out) == (head == "kitpose")
    if head == "kitpose":
        assert out["aux"].shape == (2, 5, 16, 16)
    loss = sum(v.square().mean() for v in out.values())
    assert isinstance(loss, torch.Tensor)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_published(name: str) -> None:
    with torch.device("meta"):  # counting needs no memory and no forward
        model = build_model(ModelConfig(backbone=name, init="random"), 17, 256)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert params == pytest.approx(PUBLISHED[name], rel=0.03)


def test_heads_read_channels_and_strides_from_feature_info() -> None:
    with torch.device("meta"):
        hrnet = build_model(ModelConfig(backbone="hrnet_w32"), 17)
        resnet = build_model(ModelConfig(backbone="resnet50"), 17)
    assert heatmap_head(hrnet).final.in_channels == 32
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in hrnet.head.modules())
    deconvs = [m for m in resnet.head.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(deconvs) == 3 and deconvs[0].in_channels == 2048
    assert all(d.kernel_size == (4, 4) and d.stride == (2, 2) and d.bias is None for d in deconvs)


def test_pruned_hrnet_matches_timm_branch0() -> None:
    """Dropping the unused stage-4 fuse layers does not change the stride-4 output."""
    torch.manual_seed(0)
    model = build_model(small_cfg("hrnet_w18_small"), 3, 64).eval()
    full = timm.create_model(
        "hrnet_w18_small", pretrained=False, features_only=True, feature_location="",
        out_indices=(1,),
    ).eval()  # fmt: skip
    missing, unexpected = full.load_state_dict(model.backbone.state_dict(), strict=False)
    assert not unexpected and all(".fuse_layers." in k for k in missing) and missing
    x = torch.randn(1, 3, 64, 64)
    assert torch.allclose(model.backbone(x)[-1], full(x)[-1], atol=1e-6)


def test_unknown_backbone_and_bad_input_size() -> None:
    with pytest.raises(ValueError, match="unknown timm backbone 'hrnet_w33'"):
        build_model(ModelConfig(backbone="hrnet_w33"), 17)
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model(ModelConfig(backbone="resnet50"), 17, input_size=250)


def test_imagenet_weights_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    model = build_model(small_cfg("hrnet_w18_small"), 3, 64)
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        init_weights(model, small_cfg("hrnet_w18_small", init="imagenet", weights=str(path)),
                     ["a", "b", "c"])  # fmt: skip
    with pytest.raises(ValueError, match="needs model.weights"):
        init_weights(model, small_cfg("hrnet_w18_small", init="imagenet"), ["a", "b", "c"])


@pytest.mark.parametrize("backbone", ["hrnet_w18_small", "convnext_atto"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_imagenet_weights_map_onto_features_backbone(
    tmp_path: Path, backbone: str, suffix: str
) -> None:
    classifier = timm.create_model(backbone, pretrained=False)
    path = tmp_path / f"in1k{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": classifier.state_dict()}, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in classifier.state_dict().items()}, str(path))
    model = build_model(small_cfg(backbone), 3, 64)
    line = init_weights(model, small_cfg(backbone, init="imagenet", weights=str(path)), "abc")
    assert "missing 0," in line and "shape mismatches 0" in line
    source = read_state_dict(path)
    for key, value in model.backbone.state_dict().items():
        original = key if key in source else key.replace("_", ".", 1)
        assert torch.equal(value, source[original]), key


def save_pose_checkpoint(path: Path, model: PoseModel, names: tuple[str, ...]) -> None:
    torch.save({"model": model.state_dict(), "skeleton": list(names), "epoch": 3}, path)


@pytest.mark.parametrize("head", ["heatmap", "kitpose"])
def test_checkpoint_animalpose_into_ap10k_maps_shared_channels(
    tmp_path: Path, head: HeadName
) -> None:
    torch.manual_seed(0)
    source = build_model(small_cfg("hrnet_w18_small", head), ANIMALPOSE.num_keypoints, 64)
    for param in source.parameters():  # distinguishable from any fresh init
        nn.init.uniform_(param, 1.0, 2.0)
    path = tmp_path / "ckpt.pt"
    save_pose_checkpoint(path, source, ANIMALPOSE.keypoints)
    target = build_model(small_cfg("hrnet_w18_small", head), AP10K.num_keypoints, 64)
    cfg = small_cfg("hrnet_w18_small", head, init="checkpoint", weights=str(path))
    line = init_weights(target, cfg, AP10K.keypoints)
    pairs = keypoint_mapping(ANIMALPOSE, AP10K)
    assert f"head mapped: {len(pairs)} of 17" in line
    for key, value in target.backbone.state_dict().items():
        assert torch.equal(value, source.backbone.state_dict()[key]), key
    final = "final.weight" if head == "heatmap" else "heatmap.final.weight"
    src_w, dst_w = source.head.state_dict()[final], target.head.state_dict()[final]
    for s, d in pairs:
        assert torch.equal(dst_w[d], src_w[s])
    unmapped = sorted(set(range(17)) - {d for _, d in pairs})
    assert unmapped and all(dst_w[d].abs().max() < 0.1 for d in unmapped)  # fresh init
    if head == "kitpose":  # keypoint-independent head layers transfer whole
        name = "kit.embed.weight"
        assert torch.equal(target.head.state_dict()[name], source.head.state_dict()[name])


def test_checkpoint_same_skeleton_loads_head_and_mismatch_reinitialises(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = build_model(small_cfg("hrnet_w18_small"), 3, 64)
    nn.init.uniform_(heatmap_head(source).final.weight, 1.0, 2.0)
    path = tmp_path / "ckpt.pt"
    save_pose_checkpoint(path, source, ("nose", "tail", "paw"))
    cfg = small_cfg("hrnet_w18_small", init="checkpoint", weights=str(path))

    same = build_model(small_cfg("hrnet_w18_small"), 3, 64)
    assert "head loaded" in init_weights(same, cfg, ["nose", "tail", "paw"])
    assert torch.equal(heatmap_head(same).final.weight, heatmap_head(source).final.weight)

    other = build_model(small_cfg("hrnet_w18_small"), 2, 64)
    line = init_weights(other, cfg, ["wing", "antenna"])
    assert "head re-initialised" in line and "backbone loaded" in line
    assert heatmap_head(other).final.weight.abs().max() < 0.1


def test_checkpoint_with_another_backbone_is_rejected(tmp_path: Path) -> None:
    source = build_model(small_cfg("hrnet_w18_small"), 3, 64)
    path = tmp_path / "ckpt.pt"
    save_pose_checkpoint(path, source, ("a", "b", "c"))
    target = build_model(small_cfg("convnext_atto"), 3, 64)
    cfg = small_cfg("convnext_atto", init="checkpoint", weights=str(path))
    with pytest.raises(ValueError, match="does not fit 'convnext_atto'"):
        init_weights(target, cfg, ["a", "b", "c"])

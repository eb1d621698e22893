"""Top-down heatmap pose models: a timm backbone by name plus our head, and their initialisation.

Backbones are created with ``pretrained=False``; ImageNet weights then come from a local file
or, for ``model.weights = TIMM_PRETRAINED``, from timm's pretrained weights through the
Hugging Face hub cache (``HF_HOME``; downloaded once per node, shared by its trials):

- ``hrnet*``: ``features_only=True, feature_location='', out_indices=(1,)``, the stride-4
  high-resolution branch (32 ch for w32), then a 1x1 conv to K: MMPose's HRNet wiring. timm
  builds the last stage-4 module multi-scale; its fuse layers for branches 1-3 never reach
  branch 0, so we drop them (HRNet-w32 29.31 M -> 28.54 M, as published: 28.5 M).
- any other timm model with ``features_only``: its last feature; the head adds
  log2(stride / 4) deconvs (ConvTranspose 4x4 s2 p1, 256 ch, no bias, BN, ReLU) and a 1x1 conv.
  For ResNets (stride 32) that is exactly SimpleBaseline / MMPose ``HeatmapHead``.

Channels and strides are read from timm's ``feature_info``. ``head="kitpose"`` puts KITPose's
transformer (:mod:`pose_core.kitpose_head`) on the heatmap head's K maps.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn

from pose_core.config import ModelConfig
from pose_core.kitpose_head import KeypointInteractiveTransformer
from pose_core.skeletons import Skeleton, keypoint_mapping, skeleton_from_coco_category

HEADS = ("heatmap", "kitpose")
DECONV_CHANNELS = 256


class HeatmapHead(nn.Module):
    """MMPose ``HeatmapHead``: ``num_deconv`` x (deconv 4x4 s2, BN, ReLU), then 1x1 conv to K."""

    keypoint_keys = ("final.weight", "final.bias")  # state-dict keys indexed by keypoint

    def __init__(self, in_channels: int, num_keypoints: int, num_deconv: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(channels, DECONV_CHANNELS, 4, 2, 1, bias=False),
                nn.BatchNorm2d(DECONV_CHANNELS),
                nn.ReLU(inplace=True),
            ]
            channels = DECONV_CHANNELS
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(channels, num_keypoints, 1)
        self.feature_channels = channels
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # MMPose HeatmapHead init: Normal(std=0.001) convs and deconvs, bias 0, BN 1/0
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()

    def features_and_maps(self, feature: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, C, H/s, W/s)`` -> stride-4 feature ``(B, C', H/4, W/4)``, maps ``(B, K, ..)``."""
        upsampled = self.deconv(feature)
        return upsampled, self.final(upsampled)

    def forward(self, feature: Tensor) -> dict[str, Tensor]:
        return {"heatmaps": self.features_and_maps(feature)[1]}


class KITPoseHead(nn.Module):
    """Heatmap head whose K maps (``aux``, KITPose's ``kpt_feats``) are refined by KIT.

    The context block sees the input of the 1x1 conv: for HRNet that is the backbone's
    branch-0 feature, exactly as in the official code; for deconv heads, the deconv output.
    Only the 1x1 conv is keypoint-indexed: the transformer's weights are shared by all tokens.
    """

    keypoint_keys = ("heatmap.final.weight", "heatmap.final.bias")

    def __init__(self, heatmap: HeatmapHead, kit: KeypointInteractiveTransformer) -> None:
        super().__init__()
        self.heatmap = heatmap
        self.kit = kit

    def reset_parameters(self) -> None:
        self.heatmap.reset_parameters()
        self.kit.reset_parameters()

    def forward(self, feature: Tensor) -> dict[str, Tensor]:
        stride4, maps = self.heatmap.features_and_maps(feature)
        return {"heatmaps": self.kit(stride4, maps), "aux": maps}


class PoseModel(nn.Module):
    """``forward(images (B, 3, S, S))`` -> ``{"heatmaps": (B, K, S/4, S/4)}`` (+ ``"aux"``)."""

    def __init__(
        self, backbone: nn.Module, head: HeatmapHead | KITPoseHead, backbone_name: str, k: int
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.backbone_name = backbone_name
        self.num_keypoints = k

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        feature = self.backbone(images)[-1]
        out: dict[str, Tensor] = self.head(feature)
        return out


def build_model(cfg: ModelConfig, num_keypoints: int, input_size: int = 256) -> PoseModel:
    """Backbone ``cfg.backbone`` (timm) + head ``cfg.head`` for ``num_keypoints`` outputs."""
    if cfg.head not in HEADS:
        raise ValueError(f"unknown head {cfg.head!r}; valid: {', '.join(HEADS)}")
    if num_keypoints < 1:
        raise ValueError(f"num_keypoints must be >= 1, got {num_keypoints}")
    if input_size <= 0 or input_size % 32:
        raise ValueError(f"input_size must be a positive multiple of 32, got {input_size}")
    backbone = create_backbone(cfg.backbone)
    info: Any = backbone.feature_info
    channels, stride = info.channels()[-1], info.reduction()[-1]
    heatmap = HeatmapHead(channels, num_keypoints, _deconvs_to_stride4(cfg.backbone, stride))
    head: HeatmapHead | KITPoseHead = heatmap
    if cfg.head == "kitpose":
        side = input_size // 4
        kit = KeypointInteractiveTransformer(
            heatmap.feature_channels,
            num_keypoints,
            (side, side),
            dim=cfg.kit_dim,
            depth=cfg.kit_depth,
            parts=cfg.kit_parts,
            mlp_ratio=cfg.kit_mlp_ratio,
        )
        head = KITPoseHead(heatmap, kit)
    return PoseModel(backbone, head, cfg.backbone, num_keypoints)


def create_backbone(name: str) -> nn.Module:
    """A timm ``features_only`` backbone returning one feature map (see module docstring)."""
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        raise ValueError(
            f"unknown timm backbone {name!r}; close timm names: {close or 'none'}. Tested: "
            "hrnet_w18_small, hrnet_w32, hrnet_w48, resnet50/101/152, convnext_atto; any timm "
            "model with features_only=True should work"
        )
    kwargs: dict[str, Any] = {"pretrained": False, "features_only": True}
    if name.startswith("hrnet"):
        kwargs.update(feature_location="", out_indices=(1,))
    else:
        kwargs.update(out_indices=(-1,))
    try:
        backbone = timm.create_model(name, **kwargs)
    except Exception as error:  # timm raises several types for models without feature support
        raise ValueError(
            f"timm model {name!r} cannot be built with features_only: {error}"
        ) from None
    if name.startswith("hrnet"):
        _prune_hrnet(backbone)
    return backbone


def _prune_hrnet(backbone: nn.Module) -> None:
    """Keep only the stage-4 fuse layer that produces branch 0 (MMPose multiscale_output=False).

    timm's last module fuses all four branches into four outputs; the outputs for branches 1-3
    are never returned with out_indices=(1,), and unused parameters also break DDP.
    """
    stage4: Any = backbone.get_submodule("stage4")
    last = stage4[-1]
    last.fuse_layers = last.fuse_layers[:1]
    last.multi_scale_output = False


def _deconvs_to_stride4(name: str, stride: int) -> int:
    count = math.log2(stride / 4) if stride >= 4 else -1.0
    if count < 0 or count != int(count):
        raise ValueError(
            f"backbone {name!r}: last feature has stride {stride}; heatmaps need stride 4, "
            "reachable by 2x deconvs only from strides 4, 8, 16, 32, ..."
        )
    return int(count)


# ------------------------------------------------------------------ initialisation

# model.weights value meaning "timm's own pretrained weights for model.backbone" (hub cache).
TIMM_PRETRAINED = "timm:pretrained"


def init_weights(model: PoseModel, cfg: ModelConfig, skeleton_names: Sequence[str]) -> str:
    """Initialise ``model`` per ``cfg.init``; returns one log line saying what happened.

    ``random``: keep the construction init (timm's for the backbone, MMPose/KITPose's for the
    head). ``imagenet``: ``cfg.weights`` is a local state dict (.pth/.pt/.safetensors) of the
    timm *classifier* ``cfg.backbone``, or :data:`TIMM_PRETRAINED` for timm's pretrained
    weights of it (hub cache); its keys are mapped onto the features_only backbone.
    ``checkpoint``: ``cfg.weights`` is a posetune checkpoint (keys ``model``, ``skeleton``):
    the backbone always loads; the head loads when the keypoint names match, gets the shared
    keypoints' channels when the skeletons differ, and is re-initialised otherwise.
    """
    names = list(skeleton_names)
    if len(names) != model.num_keypoints:
        raise ValueError(f"{len(names)} keypoint names for a model with K={model.num_keypoints}")
    if cfg.init == "random":
        return (
            f"init random: {cfg.backbone} backbone with timm's default init, "
            f"{cfg.head} head with its reference init"
        )
    if cfg.init == "imagenet" and cfg.weights == TIMM_PRETRAINED:
        where = f"timm's pretrained {cfg.backbone} (hub cache)"
        return _load_imagenet(model, pretrained_state_dict(cfg.backbone), where, cfg)
    if cfg.init == "imagenet":
        path = _weights_path(cfg)
        return _load_imagenet(model, read_state_dict(path), str(path), cfg)
    if cfg.init == "checkpoint":
        return _load_checkpoint(model, _weights_path(cfg), names)
    raise ValueError(f"unknown init {cfg.init!r}; valid: random, imagenet, checkpoint")


def _weights_path(cfg: ModelConfig) -> Path:
    if not cfg.weights:
        raise ValueError(
            f"model.init={cfg.init!r} needs model.weights, the path of a local file"
            + (f" or {TIMM_PRETRAINED!r}" if cfg.init == "imagenet" else "")
            + "; use model.init='random' to train from scratch"
        )
    path = Path(cfg.weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.weights ({cfg.init} init): no such file: {path}")
    return path


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a .safetensors file or a torch file (``weights_only=True``); a nested
    ``state_dict``/``model`` entry is unwrapped and ``module.``/``_orig_mod.``/``backbone.``
    prefixes (DDP, torch.compile, MMPose) are stripped."""
    path = Path(path)
    state: Any
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {_strip(key, ("module.", "_orig_mod.", "backbone.")): v for key, v in state.items()}


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    while key.startswith(prefixes):
        key = key.split(".", 1)[1]
    return key


def _backbone_key(key: str, target: dict[str, Tensor]) -> str | None:
    """The features_only name of classifier key ``key``: the same, or with the first two
    components joined by '_' (timm's FeatureListNet flattens ``stages.0`` to ``stages_0``)."""
    if key in target:
        return key
    first, _, rest = key.partition(".")
    second, _, tail = rest.partition(".")
    joined = f"{first}_{second}" + (f".{tail}" if tail else "")
    return joined if joined in target else None


def pretrained_state_dict(backbone: str) -> dict[str, Tensor]:
    """The classifier weights timm's ``pretrained=True`` loads for ``backbone``: through the hub
    cache, downloaded only when it lacks them (``HF_HUB_OFFLINE=1`` forbids that)."""
    try:
        classifier = timm.create_model(backbone, pretrained=True)
    except Exception as error:  # hub, network and timm errors have many types
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"timm's pretrained weights for {backbone!r} cannot be loaded ({first}); name a "
            f"local file under [weights] in the catalog, or pre-fetch them on the node"
        ) from None
    return classifier.state_dict()


def _load_imagenet(
    model: PoseModel, source: dict[str, Tensor], path: str, cfg: ModelConfig
) -> str:
    target = model.backbone.state_dict()
    loaded: dict[str, Tensor] = {}
    used = mismatched = 0
    for key, value in source.items():
        name = _backbone_key(key, target)
        if name is None:
            continue
        used += 1
        if target[name].shape != value.shape:
            mismatched += 1
        else:
            loaded[name] = value
    if not loaded:
        raise ValueError(
            f"{path}: none of its {len(source)} tensors fits timm backbone {cfg.backbone!r}; "
            "is it a state dict of that classifier?"
        )
    model.backbone.load_state_dict(loaded, strict=False)
    return (
        f"init imagenet from {path}: loaded {len(loaded)}/{len(target)} backbone tensors of "
        f"{cfg.backbone}; missing {len(target) - len(loaded)}, unexpected "
        f"{len(source) - used} (classifier and layers the pose backbone drops), shape "
        f"mismatches {mismatched}; {cfg.head} head random"
    )


def _load_checkpoint(model: PoseModel, path: Path, names: list[str]) -> str:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "model" not in state or "skeleton" not in state:
        raise ValueError(f"{path} is not a posetune checkpoint (needs keys 'model', 'skeleton')")
    weights = {_strip(k, ("module.", "_orig_mod.")): v for k, v in state["model"].items()}
    backbone = {k[9:]: v for k, v in weights.items() if k.startswith("backbone.")}
    try:
        model.backbone.load_state_dict(backbone)
    except RuntimeError as error:
        reason = str(error).splitlines()[1:2] or [str(error)]
        raise ValueError(
            f"{path}: the checkpoint's backbone does not fit {model.backbone_name!r}: "
            f"{reason[0].strip()}"
        ) from None
    head = {k[5:]: v for k, v in weights.items() if k.startswith("head.")}
    line = _load_head(model, head, [str(n) for n in state["skeleton"]], names)
    return f"init checkpoint from {path}: backbone loaded ({len(backbone)} tensors); {line}"


def _load_head(
    model: PoseModel, source: dict[str, Tensor], src_names: list[str], dst_names: list[str]
) -> str:
    target = model.head.state_dict()
    per_keypoint = set(model.head.keypoint_keys)
    same_layout = set(source) == set(target) and all(
        source[k].shape == target[k].shape for k in target if k not in per_keypoint
    )
    channels = {source[k].shape[0] for k in per_keypoint if k in source}
    if same_layout and channels != {len(src_names)}:
        raise ValueError(
            f"checkpoint head has {sorted(channels)} keypoint channels but its skeleton names "
            f"{len(src_names)} keypoints"
        )
    if not same_layout:
        model.head.reset_parameters()
        return "head re-initialised (the checkpoint's head has a different architecture)"
    if src_names == dst_names:
        model.head.load_state_dict(source)
        return f"head loaded (same {len(dst_names)} keypoints)"
    pairs = keypoint_mapping(_skeleton(src_names), _skeleton(dst_names))
    model.head.reset_parameters()
    if not pairs:
        return (
            f"head re-initialised: no keypoint of the checkpoint's {len(src_names)}-keypoint "
            f"skeleton maps onto this {len(dst_names)}-keypoint one"
        )
    fresh = model.head.state_dict()
    merged = {k: v for k, v in source.items() if k not in per_keypoint}
    src_idx, dst_idx = (list(index) for index in zip(*pairs, strict=True))
    for key in per_keypoint:
        channels = fresh[key].clone()
        channels[dst_idx] = source[key][src_idx].to(channels.dtype)
        merged[key] = channels
    model.head.load_state_dict(merged)
    return (
        f"head mapped: {len(pairs)} of {len(dst_names)} keypoint channels from the "
        f"checkpoint's {len(src_names)}-keypoint skeleton, {len(dst_names) - len(pairs)} "
        "re-initialised"
    )


def _skeleton(names: list[str]) -> Skeleton:
    return skeleton_from_coco_category({"name": "checkpoint", "keypoints": names, "skeleton": []})

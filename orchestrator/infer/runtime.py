"""The model side of ``posetune predict``: a trained checkpoint (PyTorch) or an exported
``model.onnx`` (onnxruntime), behind one :class:`Runner`.

Both runners crop the same way (:class:`pose_core.dataset.TopDownDataset`, test mode: the
box padded x1.25, square, warped to the input size) and decode the same way
(:func:`pose_core.engine.predict`: flip test, heatmap decode, back to image pixels); only the
network that turns a batch of crops into heatmaps differs. An ONNX runner takes its input
size, keypoint names, skeleton links, flip pairs and decoding (flip test, shift, decoder) from
the model's own posetune metadata (:func:`orchestrator.infer.export.describe`), and refuses a
model without that metadata, of another posetune version, or whose recorded preprocessing is
not the crop and normalisation this posetune computes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pose_core.codecs import flip_back
from pose_core.config import EvalConfig, TrialConfig, from_dict
from pose_core.dataset import (
    HEATMAP_STRIDE,
    MEAN_RGB,
    STD_RGB,
    ImageCache,
    ImageSource,
    TopDownDataset,
)
from pose_core.engine import load_checkpoint, predict
from pose_core.geometry import BBOX_PADDING
from pose_core.models import build_model
from pose_core.records import Instance
from pose_core.skeletons import Skeleton, skeleton_from_coco_category
from pose_core.trainer import make_loader

Device = Literal["cpu", "cuda"]
INPUT, OUTPUT = "images", "heatmaps"  # the exported model's tensor names
BATCH = 16
# What an ONNX runner reads from the model's posetune metadata besides the skeleton.
REQUIRED = {
    "input": ("shape", "channel_order", "layout", "mean", "std", "bbox_padding"),
    "output": ("stride", "decode", "flip_test", "shift_heatmap"),
}


def checkpoint_file(path: str) -> Path:
    """A checkpoint file, a Ray checkpoint folder holding one, or an s3:// URI of either."""
    if "://" in path:
        from orchestrator.store.storage import local_cache

        path = local_cache(path)
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / "checkpoint.pt"
    if not candidate.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (expected a file or a folder "
                                "holding checkpoint.pt)")
    return candidate


def load_trained(checkpoint: str) -> tuple[torch.nn.Module, TrialConfig, Skeleton]:
    """The model of a checkpoint (file, Ray folder or s3:// URI), its config and skeleton."""
    state = load_checkpoint(checkpoint_file(checkpoint), restore_rng=False)
    cfg = TrialConfig.from_dict(state["config"])
    names = list(state["skeleton"])
    skeleton = skeleton_from_coco_category({"name": "animal", "keypoints": names, "skeleton": []})
    model = build_model(cfg.model, len(names), cfg.data.input_size)
    model.load_state_dict(state["model"])
    return model, cfg, skeleton


def trial_test_set(
    row: dict[str, Any], cfg: TrialConfig, catalog_path: str | None
) -> tuple[list[Instance], Skeleton]:
    """A trial row's test instances and skeleton: from the sweep's catalog file, else the
    default catalog as the row's scale generated it (its fixed pools, if any)."""
    from orchestrator.data.catalog import Catalog
    from orchestrator.data.trialdata import test_set
    from orchestrator.study.scale import SCALES

    pools = SCALES.get(str(row.get("scale") or "smoke"), SCALES["smoke"]).dataset_sizes
    catalog = Catalog.from_file(catalog_path, pools) if catalog_path else Catalog.default(
        pools, needs={cfg.data.test: cfg.data.max_test or 0})
    return test_set(cfg, catalog)


def instance_loader(input_size: int, skeleton: Skeleton, instances: Sequence[Instance],
                    images: ImageSource | None = None) -> Any:
    """Test-time crops of ``instances`` (no augmentation), in order, batches of 16; pixels
    from ``images`` (keyed by ``Instance.image_path``), else decoded from the files."""
    dataset = TopDownDataset.for_skeleton(
        list(instances), skeleton, input_size=input_size,
        image_cache=images if images is not None else ImageCache())
    return make_loader(dataset, BATCH, False, 0)


class OnnxModel(torch.nn.Module):
    """An onnxruntime session behind the PyTorch model's interface (``{"heatmaps": ...}``),
    so the trial's own evaluation and prediction run it; with ``reference`` it also records
    the largest heatmap difference from that model on every batch it sees."""

    def __init__(self, session: Any, reference: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.session = session
        self.reference = reference
        self.max_abs_diff = 0.0

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        array = images.detach().cpu().float().numpy()
        heatmaps = torch.from_numpy(self.session.run([OUTPUT], {INPUT: array})[0])
        if self.reference is not None:
            with torch.no_grad():
                expected = self.reference(images.cpu())["heatmaps"].float()
            self.max_abs_diff = max(self.max_abs_diff,
                                    float((heatmaps - expected).abs().max()))
        return {"heatmaps": heatmaps}


@dataclass
class Runner:
    """A network that maps crops ``(N, 3, S, S)`` to ``{"heatmaps": (N, K, S/4, S/4)}``, with
    what cropping and decoding need: the skeleton (flip pairs), input size and decoding."""

    network: torch.nn.Module
    skeleton: Skeleton
    input_size: int
    decoding: EvalConfig  # flip_test, shift_heatmap and decode are read
    device: torch.device  # where the crops go (CPU for onnxruntime, which places them itself)
    description: str  # for the summary line: "PyTorch on cpu", "ONNX Runtime (CPU...)"

    def predict(self, instances: Sequence[Instance],
                images: ImageSource | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints ``(N, K, 2)`` in image pixels and scores ``(N, K)``, in ``instances``
        order."""
        return self._run(self.network, self.decoding, instances, images)

    def predict_mirrored(self, instances: Sequence[Instance],
                         images: ImageSource | None = None) -> np.ndarray:
        """Keypoints ``(N, K, 2)`` from the mirrored crop alone, mapped back (left/right
        swapped back by the flip pairs): what the flip test averages with the plain
        prediction, kept apart so that their disagreement can be measured."""
        mirrored = MirroredNetwork(self.network, self.skeleton.flip_index,
                                   self.decoding.shift_heatmap)
        coords, _ = self._run(mirrored, replace(self.decoding, flip_test=False), instances,
                              images)
        return coords

    def _run(self, network: torch.nn.Module, decoding: EvalConfig,
             instances: Sequence[Instance],
             images: ImageSource | None) -> tuple[np.ndarray, np.ndarray]:
        loader = instance_loader(self.input_size, self.skeleton, instances, images)
        network.to(self.device)
        with torch.no_grad():
            coords, scores, indices = predict(network, loader, self.device,
                                              self.skeleton.flip_index, decoding)
        order = np.argsort(indices)
        return coords[order], scores[order]


class MirroredNetwork(torch.nn.Module):
    """``network`` on the mirrored crop, its heatmaps flipped back (pose_core's flip_back)."""

    def __init__(self, network: torch.nn.Module, flip_index: Sequence[int],
                 shift: bool) -> None:
        super().__init__()
        self.network, self.flip_index, self.shift = network, list(flip_index), shift

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        heatmaps = self.network(torch.flip(images, dims=[3]))["heatmaps"].float()
        return {"heatmaps": flip_back(heatmaps, self.flip_index, self.shift)}


def torch_device(device: Device | None) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: PyTorch here sees no CUDA GPU; use --device cpu")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def checkpoint_runner(checkpoint: str, device: Device | None = None) -> Runner:
    """The runner of a trained checkpoint (default device: a CUDA GPU when there is one)."""
    model, cfg, skeleton = load_trained(checkpoint)
    target = torch_device(device)
    return Runner(model.eval(), skeleton, int(cfg.data.input_size), cfg.eval, target,
                  f"PyTorch on {target.type}")


def predict_instances(
    model: torch.nn.Module, cfg: TrialConfig, skeleton: Skeleton, instances: Sequence[Instance]
) -> tuple[np.ndarray, np.ndarray]:
    """A trial's model on ``instances`` (files decoded from disk), as its evaluation crops
    and decodes them: keypoints ``(N, K, 2)`` in image pixels and scores ``(N, K)``."""
    runner = Runner(model.eval(), skeleton, int(cfg.data.input_size), cfg.eval,
                    torch_device(None), "PyTorch")
    return runner.predict(instances)


def onnx_runner(path: str, device: Device | None = None) -> Runner:
    """The runner of a ``posetune export`` ``model.onnx`` under onnxruntime: the CUDA
    provider for ``device="cuda"`` (refused when onnxruntime has none), else the CPU one."""
    import onnxruntime

    if not Path(path).is_file():
        raise FileNotFoundError(f"--model {path} not found")
    available = onnxruntime.get_available_providers()
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise ValueError(f"--device cuda: this onnxruntime has no CUDAExecutionProvider (it "
                         f"has {', '.join(available)}); install onnxruntime-gpu or use "
                         "--device cpu")
    if device is None:
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    try:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # the threads PyTorch would use
        session = onnxruntime.InferenceSession(path, options, providers=[provider])
    except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types vary
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path}: not an ONNX model onnxruntime can load ({first})") from None
    info = posetune_metadata(path, session.get_modelmeta().custom_metadata_map)
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if names != ([INPUT], [OUTPUT]):
        raise ValueError(f"{path}: inputs {names[0]} and outputs {names[1]}, expected "
                         f"[{INPUT!r}] and [{OUTPUT!r}] as posetune export writes them")
    skeleton = metadata_skeleton(path, info)
    decoding = from_dict(EvalConfig, {
        "flip_test": bool(info["output"]["flip_test"]), "decode": info["output"]["decode"],
        "shift_heatmap": bool(info["output"]["shift_heatmap"])}, f"{path} output")
    size = int(info["input"]["shape"][-1])
    return Runner(OnnxModel(session), skeleton, size, decoding, torch.device("cpu"),
                  f"ONNX Runtime ({provider})")


def posetune_metadata(path: str, raw: Mapping[str, str]) -> dict[str, Any]:
    """The model's posetune metadata (JSON values), checked: this posetune version, and the
    crop, normalisation and heatmap stride this posetune computes (else ValueError)."""
    from pose_core import __version__

    if "posetune_version" not in raw:
        raise ValueError(f"{path}: no posetune metadata (posetune_version) in the model: "
                         "use a model.onnx that posetune export wrote")
    try:
        info = {key: json.loads(value) for key, value in raw.items()}
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: posetune metadata is not JSON ({error})") from None
    if info["posetune_version"] != __version__:
        raise ValueError(f"{path} was exported by posetune {info['posetune_version']}, this is "
                         f"posetune {__version__}: export the trial again with this version")
    missing = [key for key in ("input", "output", "keypoint_names", "skeleton", "flip_pairs",
                               "sigmas") if key not in info]
    missing += [f"{part}.{key}" for part, keys in REQUIRED.items() if isinstance(info.get(part), dict)
                for key in keys if key not in info[part]]
    if missing:
        raise ValueError(f"{path}: posetune metadata lacks {', '.join(missing)} (an incomplete "
                         "export: export the trial again)")
    source, output = info["input"], info["output"]
    recorded = (source["channel_order"], source["layout"], tuple(source["mean"]),
                tuple(source["std"]), source["bbox_padding"], output["stride"])
    expected = ("RGB", "NCHW", MEAN_RGB, STD_RGB, BBOX_PADDING, HEATMAP_STRIDE)
    if recorded != expected:
        raise ValueError(f"{path}: the model expects preprocessing {recorded} (channels, "
                         f"layout, mean, std, box padding, stride), posetune {__version__} "
                         f"computes {expected}")
    return info


def metadata_skeleton(path: str, info: Mapping[str, Any]) -> Skeleton:
    """The skeleton an exported model records (names, links and flip pairs by name)."""
    names = tuple(str(n) for n in info["keypoint_names"])
    try:
        links = tuple((names.index(a), names.index(b)) for a, b in info["skeleton"])
        pairs = tuple((names.index(a), names.index(b)) for a, b in info["flip_pairs"])
        sigmas = tuple(float(s) for s in info["sigmas"])
        return Skeleton(name=Path(path).name, keypoints=names, flip_pairs=pairs, links=links,
                        upper_body=(), lower_body=(), sigmas=sigmas)
    except ValueError as error:
        raise ValueError(f"{path}: posetune metadata: bad skeleton ({error})") from None

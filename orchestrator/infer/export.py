"""``posetune export``: one trial's model as ONNX and a PyTorch program, with a parity check.

The trial is the one asked for (``--trial ID``) or, by default, the best of the experiment's
final stage: the variant with the best mean of the experiment's metric over its seeds (the
mean halving ranks arms by, :func:`orchestrator.plan.halving.score`), and of that variant
the seed with the best value that has a checkpoint. A failed trial, a trial without a
loadable checkpoint and an unknown trial id are refused (``ValueError``: exit 2).

``DIR/model.onnx`` takes ``images`` ``(N, 3, S, S)`` float32, RGB, each pixel
``(value 0..255 - mean) / std``, a top-down crop of one animal's box (padded x1.25, square),
and returns ``heatmaps`` ``(N, K, S/4, S/4)``. That contract, the keypoint names, skeleton
links, flip pairs and the sigma set are in the ONNX ``metadata_props`` (JSON values) and in
``DIR/model.json``. ``DIR/model.pt2`` is the same network as a ``torch.export`` program; a
model that ``torch.export`` cannot capture (KITPose's data-dependent matching) is written as
TorchScript (``model.torchscript.pt``) instead, and model.json says which.

The parity check runs the trial's own test images through the trial's evaluation
(:func:`pose_core.engine.evaluate`: flip test, decode, OKS AP) twice, with the PyTorch model
and with ``model.onnx`` under onnxruntime (CPU), and compares the heatmaps of every batch.
It fails when the two APs differ by more than 0.001, or the PyTorch AP differs from the
trial row's by more than that. Everything is written into a temporary folder beside DIR and
renamed to DIR at the end, so an interrupted export leaves no half-written DIR.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from orchestrator.infer.runtime import (
    INPUT,
    OUTPUT,
    OnnxModel,
    instance_loader,
    load_trained,
    trial_test_set,
)
from orchestrator.plan.halving import score

Row = dict[str, Any]
TOLERANCE = 0.001


@dataclass(frozen=True)
class Parity:
    """The parity check's numbers (``DIR/parity.json``)."""

    max_abs_diff: float
    ap_pytorch: float
    ap_onnx: float
    ap_row: float | None
    instances: int
    tolerance: float
    passed: bool
    reason: str


def choose_trial(
    rows: Sequence[Row], final: Sequence[Row], metric: str, mode: str, trial: str | None,
) -> Row:
    """The row to export: ``trial`` (a trial id of ``rows``), else the best of ``final``
    (the final stage's ``ok`` rows) by ``metric`` averaged over seeds."""
    if trial is not None:
        found = [r for r in rows if r["trial_id"] == trial]
        if not found:
            known = ", ".join(sorted({r["trial_id"] for r in rows})[:8])
            raise ValueError(f"no trial {trial!r} in experiment {rows[0]['experiment']!r} "
                             f"(its trials: {known}{', ...' if len(rows) > 8 else ''})")
        row = found[-1]
        if row["status"] != "ok":
            why = (row.get("error") or "").splitlines()[:1]
            raise ValueError(f"trial {trial} {row['status']} ({why[0] if why else 'no error'}"
                             "): only a trial that finished ok can be exported")
        return row
    sign = 1.0 if mode == "max" else -1.0
    by_variant: dict[str, list[Row]] = {}
    for row in final:
        by_variant.setdefault(row["variant_id"], []).append(row)
    scored = [(s, v) for v, group in by_variant.items() if (s := score(group, metric)) is not None]
    if not scored:
        raise ValueError(f"experiment {rows[0]['experiment']!r} has no finished trial with "
                         f"{metric} to export")
    _, variant = max(scored, key=lambda item: sign * item[0])  # first of equals: stable
    seeds = sorted((r for r in by_variant[variant] if r.get(metric) is not None),
                   key=lambda r: sign * float(r[metric]), reverse=True)
    with_checkpoint = [r for r in seeds if r.get("checkpoint_uri")]
    if not with_checkpoint:
        raise ValueError(f"the best variant {variant} has no trial with a checkpoint "
                         "(trained with checkpoints off?)")
    return with_checkpoint[0]


class Heatmaps(torch.nn.Module):
    """The pose model with the heatmaps tensor as its one output (what gets exported)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model(images)["heatmaps"]
        return out


def describe(row: Row, cfg: Any, skeleton: Any, sigmas: np.ndarray) -> dict[str, Any]:
    """What a user of the exported model must know: input contract, keypoints, provenance."""
    from pose_core import __version__
    from pose_core.dataset import MEAN_RGB, STD_RGB
    from pose_core.geometry import BBOX_PADDING

    size = int(cfg.data.input_size)
    names = list(skeleton.keypoints)
    return {
        "posetune_version": __version__,
        "input": {"name": INPUT, "shape": ["N", 3, size, size], "dtype": "float32",
                  "layout": "NCHW", "channel_order": "RGB", "pixel_range": "0..255",
                  "mean": list(MEAN_RGB), "std": list(STD_RGB),
                  "normalise": "(pixel - mean) / std per channel",
                  "crop": f"top-down: the animal's box padded x{BBOX_PADDING}, made square, "
                          f"warped to {size}x{size}", "bbox_padding": BBOX_PADDING},
        "output": {"name": OUTPUT, "shape": ["N", len(names), size // 4, size // 4],
                   "stride": 4, "decode": cfg.eval.decode, "flip_test": cfg.eval.flip_test,
                   "shift_heatmap": cfg.eval.shift_heatmap},
        "keypoint_names": names,
        "skeleton": [[names[a], names[b]] for a, b in skeleton.links],
        "flip_pairs": [[names[a], names[b]] for a, b in skeleton.flip_pairs],
        "sigma_set": cfg.eval.sigmas,
        "sigmas": [round(float(s), 6) for s in sigmas],
        "trial": {key: row.get(key) for key in (
            "experiment", "stage", "variant_id", "seed", "trial_id", "AP", "checkpoint_uri")},
        "model": {"backbone": cfg.model.backbone, "head": cfg.model.head},
    }


def export_onnx(model: torch.nn.Module, size: int, path: Path,
                metadata: Mapping[str, Any]) -> str:
    """``model.onnx`` with a dynamic batch axis and ``metadata`` as JSON metadata_props;
    returns the exporter used: the dynamo (``torch.export``) one, else the TorchScript one."""
    import onnx

    example = torch.zeros(2, 3, size, size)
    try:
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT],
                          output_names=[OUTPUT], dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
        exporter = "dynamo"
    except Exception:  # noqa: BLE001 - e.g. KITPose: the legacy exporter traces it instead
        torch.onnx.export(model, (example,), str(path), input_names=[INPUT],
                          output_names=[OUTPUT], dynamo=False,
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
        exporter = "torchscript"
    proto = onnx.load(str(path))
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    onnx.save(proto, str(path))
    return exporter


def export_program(model: torch.nn.Module, size: int, folder: Path) -> tuple[str, str]:
    """``model.pt2`` (``torch.export``), else ``model.torchscript.pt``: (file name, format)."""
    example = torch.zeros(2, 3, size, size)
    try:
        program = torch.export.export(model, (example,),
                                      dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
        torch.export.save(program, str(folder / "model.pt2"))
        return "model.pt2", "torch.export"
    except Exception:  # noqa: BLE001 - data-dependent control flow: trace it instead
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, str(folder / "model.torchscript.pt"))
        return "model.torchscript.pt", "torchscript"


def parity(model: torch.nn.Module, onnx_path: Path, cfg: Any, skeleton: Any,
           instances: Sequence[Any], sigmas: np.ndarray, ap_row: float | None) -> Parity:
    """The trial's evaluation with the PyTorch model and with the ONNX one, on CPU."""
    import onnxruntime

    from pose_core.engine import evaluate
    from pose_core.trainer import gt_records

    device = torch.device("cpu")
    records = gt_records(instances)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_model = OnnxModel(session, reference=model)
    size = int(cfg.data.input_size)
    results = [evaluate(m, instance_loader(size, skeleton, instances), records,
                        skeleton.flip_index, sigmas, cfg.eval, device)
               for m in (model, onnx_model)]
    ap_pytorch, ap_onnx = float(results[0].AP), float(results[1].AP)
    problems = []
    if abs(ap_onnx - ap_pytorch) > TOLERANCE:
        problems.append(f"ONNX AP {ap_onnx:.4f} differs from PyTorch AP {ap_pytorch:.4f}")
    if ap_row is not None and abs(ap_pytorch - ap_row) > TOLERANCE:
        problems.append(f"PyTorch AP {ap_pytorch:.4f} differs from the trial row's AP "
                        f"{ap_row:.4f} (another test set or checkpoint than the trial's?)")
    return Parity(onnx_model.max_abs_diff, ap_pytorch, ap_onnx, ap_row, len(instances),
                  TOLERANCE, not problems, "; ".join(problems))


def load_row_model(row: Row) -> tuple[torch.nn.Module, Any]:
    """The trial's model and config from its checkpoint, refused (ValueError) when missing,
    unreadable, or of another config than the row's."""
    uri = row.get("checkpoint_uri")
    name = f"trial {row['trial_id']} ({row['variant_id']}, seed {row['seed']})"
    if not uri:
        raise ValueError(f"{name} has no checkpoint to export")
    try:
        model, cfg, _ = load_trained(str(uri))
    except Exception as error:  # noqa: BLE001 - any unreadable checkpoint is the same refusal
        raise ValueError(f"{name}: checkpoint {uri} does not load: "
                         f"{type(error).__name__}: {error}") from None
    recorded = json.loads(row.get("config_json") or "{}")
    if recorded and recorded != cfg.to_dict():
        raise ValueError(f"{name}: checkpoint {uri} holds another config than the trial row's")
    return model.eval(), cfg


def export_trial(row: Row, out: str, catalog_path: str | None,
                 say: Callable[[str], None] = print) -> Parity:
    """Write ``out``/model.onnx, the PyTorch program, model.json and parity.json."""
    from pose_core.skeletons import resolve_sigmas

    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ValueError(f"--out {out} exists and is not an empty folder; choose a new one")
    model, cfg = load_row_model(row)
    instances, skeleton = trial_test_set(row, cfg, catalog_path)
    names = list(row.get("keypoint_names") or skeleton.keypoints)
    if list(skeleton.keypoints) != names:
        raise ValueError(f"the test set {cfg.data.test} has keypoints {skeleton.keypoints}, "
                         f"the trial {names}: pass the sweep's --catalog")
    sigmas = resolve_sigmas(cfg.eval.sigmas, skeleton)
    info = describe(row, cfg, skeleton, sigmas)
    network = Heatmaps(model).eval()
    size = int(cfg.data.input_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    work.chmod(0o755)  # mkdtemp's 0700 would stay on DIR after the rename
    try:
        say(f"exporting {row['variant_id']}, seed {row['seed']} (trial {row['trial_id']}, "
            f"AP {_number(row.get('AP'))}) ...")
        info["onnx_exporter"] = export_onnx(network, size, work / "model.onnx", info)
        info["pytorch_file"], info["pytorch_format"] = export_program(network, size, work)
        (work / "model.json").write_text(json.dumps(info, indent=1))
        check = parity(model, work / "model.onnx", cfg, skeleton, instances, sigmas,
                       row.get("AP"))
        (work / "parity.json").write_text(json.dumps(asdict(check), indent=1))
        if target.exists():
            target.rmdir()  # empty (checked above): the rename replaces it
        os.replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    verdict = "passed" if check.passed else f"FAILED: {check.reason}"
    say(f"{target}: model.onnx ({info['onnx_exporter']} exporter), {info['pytorch_file']} "
        f"({info['pytorch_format']}), model.json, parity.json")
    say(f"parity on {check.instances} test instance(s): max |heatmap diff| "
        f"{check.max_abs_diff:.2e}, AP PyTorch {check.ap_pytorch:.4f}, ONNX {check.ap_onnx:.4f}, "
        f"row {_number(check.ap_row)}: {verdict}")
    return check


def _number(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"

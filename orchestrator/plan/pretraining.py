"""Build the generated-pretrained starts a sweep needs, once per machine (Ray-free).

:func:`ensure_start` reuses a cached start whose digest matches (:mod:`orchestrator.data.
pretrained`), and otherwise trains it (:func:`pose_core.pretrain.train.pretrain`) and writes
it atomically: a file whose recipe changed is never found (its digest is in the name), and an
unreadable one (truncated, foreign) is replaced. ``posetune pretrain`` calls it directly, the
sweep's preflight for every start its trials name; ``--plan`` lists the ones missing with
their cost (:func:`missing_starts`, :func:`cost_line`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from orchestrator.data.pretrained import StartId, is_generated, parse, readable
from orchestrator.study.scale import Scale
from orchestrator.study.trials import TrialJob
from pose_core.config import TrialConfig
from pose_core.pretrain import get_recipe
from pose_core.pretrain.recipe import code_digest, start_marker, versions


def starts_of(jobs: Iterable[TrialJob]) -> list[StartId]:
    """Every generated start the jobs' configs name, in a stable order."""
    found = {parse(str(job.config.model.weights)) for job in jobs
             if job.config.model.init == "imagenet" and is_generated(job.config.model.weights)}
    return sorted(found)


def missing_starts(jobs: Iterable[TrialJob]) -> list[StartId]:
    return [start for start in starts_of(jobs) if not readable(start)]


def cost_line(start: StartId) -> str:
    recipe = get_recipe(start.recipe)
    return (f"{start.backbone} ({recipe.name} recipe): {recipe.steps} steps x {recipe.batch} "
            f"images at {recipe.image_size} px, {recipe.images} fractal images; built once per "
            f"machine before the first trial")


def scale_backbones(scale: Scale) -> list[str]:
    """The backbones a scale trains: its stand-ins, and the study baseline's backbone there."""
    default = scale.changes.get("model.backbone") or scale.backbone(TrialConfig().model.backbone)
    return sorted({str(default), *scale.backbones.values()})


def ensure_start(recipe_name: str, backbone: str,
                 say: Callable[[str], None] = print) -> tuple[Path, bool]:
    """The start's file, and whether it was built now (False: reused from the cache)."""
    start = parse(start_marker(recipe_name, backbone))
    if readable(start):
        say(f"generated-pretrained start {recipe_name}/{backbone}: cached ({start.file})")
        return start.file, False
    if start.file.exists() or start.meta.exists():
        say(f"generated-pretrained start {recipe_name}/{backbone}: {start.file} is unreadable; "
            "replacing it")
    say(f"building the generated-pretrained start {recipe_name}/{backbone} (once per machine)")
    from safetensors.torch import save_file

    from pose_core.pretrain.train import pretrain

    recipe = get_recipe(recipe_name)
    result = pretrain(backbone, recipe, lambda line: say("  " + line))
    start.file.parent.mkdir(parents=True, exist_ok=True)
    tmp = start.file.with_name(f".{start.file.name}.{os.getpid()}.tmp")
    save_file(result.state, str(tmp))
    meta = {"digest": start.digest, "recipe": recipe.__dict__, "backbone": backbone,
            "code": code_digest(), "versions": versions(), "seconds": round(result.seconds, 1),
            "final_loss": result.final_loss, "final_accuracy": result.final_accuracy,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds")}
    tmp_meta = tmp.with_suffix(".json.tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True))
    tmp.replace(start.file)
    tmp_meta.replace(start.meta)
    say(f"  built in {result.seconds:.0f} s (fractal cells labelled right: "
        f"{result.final_accuracy:.2f}, {recipe.categories} categories): {start.file}")
    return start.file, True


def check_starts(planned: Mapping[str, list[TrialJob]], say: Callable[[str], None], build: bool) -> None:
    """The preflight's last step (the driver runs it after :func:`orchestrator.plan.preflight.
    preflight`, which a trial's worker imports and so must not reach the pretraining code): the
    generated-pretrained starts the trials name (``--scale mini``/``smoke``). A sweep builds
    each one this machine lacks, with progress, before Ray starts; ``--plan`` only says which
    are missing (its cost table counts them)."""
    from orchestrator.data.pretrained import LABEL

    for start in starts_of(job for jobs in planned.values() for job in jobs):
        if build:
            path, _ = ensure_start(start.recipe, start.backbone, say)
            say(f"initial weights: {start.backbone}: {LABEL}, {path}")
        elif readable(start):
            say(f"initial weights: {start.backbone}: {LABEL}, {start.file}")
        else:
            say(f"initial weights: {start.backbone}: {LABEL}, not built on this machine yet: "
                "the sweep builds it first")

"""The generated-pretrained start: where it is cached, and how a trial finds it.

At ``--scale mini`` and ``smoke`` no ImageNet file exists, so ``model.init = "imagenet"``
means a start posetune makes itself (:mod:`pose_core.pretrain`: a backbone pretrained on
fractal categories). Planning writes it into the trial's config as ``model.weights =
"generated:RECIPE/BACKBONE/DIGEST"``, (:func:`pose_core.pretrain.recipe.start_marker`), so the digest of what made the weights
is part of the training identity and every row says which start it used. The file lives once
per machine beside the throughput cache, ``$POSETUNE_CACHE/starts/RECIPE-BACKBONE-DIGEST``
(``.safetensors``, with a ``.json`` saying what made it); ``orchestrator.plan.pretraining``
builds it (``posetune pretrain``, or the sweep's preflight), and the trial only looks it up
here (:func:`local_start`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

from pose_core.pretrain import START_PREFIX as PREFIX

CACHE_ENV = "POSETUNE_CACHE"
LABEL = "generated-pretrained start (stand-in for ImageNet)"


def cache_root() -> Path:
    """posetune's per-machine cache: ``$POSETUNE_CACHE``, default ``~/.cache/posetune``
    (measured throughput figures and generated starts)."""
    return Path(os.environ.get(CACHE_ENV) or str(Path.home() / ".cache" / "posetune"))


class StartId(NamedTuple):
    recipe: str
    backbone: str
    digest: str

    @property
    def marker(self) -> str:
        return f"{PREFIX}{self.recipe}/{self.backbone}/{self.digest}"

    @property
    def file(self) -> Path:
        return cache_root() / "starts" / f"{self.recipe}-{self.backbone}-{self.digest}.safetensors"

    @property
    def meta(self) -> Path:
        return self.file.with_suffix(".json")


def is_generated(weights: object) -> bool:
    return isinstance(weights, str) and weights.startswith(PREFIX)


def parse(weights: str) -> StartId:
    """``generated:mini/hrnet_w18_small/0123abcd...`` -> its parts (ValueError otherwise)."""
    parts = weights.removeprefix(PREFIX).split("/") if is_generated(weights) else []
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"model.weights {weights!r}: not a generated start "
                         f"({PREFIX}RECIPE/BACKBONE/DIGEST)")
    return StartId(*parts)


def readable(start: StartId) -> bool:
    """The cached file exists, its record names the same digest and its tensors load."""
    try:
        meta = json.loads(start.meta.read_text())
        if meta.get("digest") != start.digest:
            return False
        from safetensors import safe_open

        with safe_open(str(start.file), framework="pt") as handle:
            return len(list(handle.keys())) > 0
    except Exception:  # a missing, truncated or foreign file: any error means unreadable
        return False


def local_start(weights: str) -> str:
    """In the trial: the cached file of a generated start (one line naming the command that
    builds it when this machine has none)."""
    start = parse(weights)
    if not readable(start):
        raise FileNotFoundError(
            f"no generated-pretrained start {start.recipe}/{start.backbone} ({start.digest}) "
            f"in {start.file.parent}; build it on this machine with `posetune pretrain "
            f"--scale {start.recipe} --backbone {start.backbone}`")
    return str(start.file)

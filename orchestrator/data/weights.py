"""Where ``model.init = "imagenet"`` weights come from, checked before a sweep and resolved in
the trial.

Order: the catalog's ``[weights]`` entry for the backbone when it names one (a local file, or
an ``s3://`` object fetched once per node like a checkpoint), else timm's own pretrained
weights through the Hugging Face hub cache (``HF_HOME``/``HF_HUB_CACHE``): downloaded once per
node and shared by its trials; with ``HF_HUB_OFFLINE=1`` only a cached copy is used.
The preflight (:func:`check_weights_source`) fails in one line before any trial starts;
the trial (:func:`local_weights`) returns a local path, or
:data:`pose_core.models.TIMM_PRETRAINED` for :func:`pose_core.models.init_weights`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from pose_core.models import TIMM_PRETRAINED

if TYPE_CHECKING:
    from orchestrator.data.catalog import Catalog

HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub loader looks for


class WeightsError(ValueError):
    """ImageNet weights that cannot be found or do not fit the backbone."""


def check_weights_source(
    backbone: str, catalog_path: str | Catalog | None, online: bool | None = None
) -> str:
    """One line saying where the weights will come from; raises WeightsError when nowhere.

    A named file must exist and be a state dict with tensors that fit ``backbone``; a named
    ``s3://`` object must exist; otherwise the hub cache must hold timm's weights, or we
    must be online (``online=None``: online unless ``HF_HUB_OFFLINE`` is set).
    """
    named = catalog_weights(backbone, catalog_path)
    if named and "://" in named:
        return _check_remote(named)
    if named:
        return _check_file(named, backbone)
    hub_id = hub_model_id(backbone)
    cached = hub_cached_file(hub_id)
    if cached:
        return f"{backbone}: timm's pretrained {hub_id} from the hub cache ({cached})"
    if online is None:
        online = not _env_flag("HF_HUB_OFFLINE") and hub_reachable(hub_id)
    if online:
        return f"{backbone}: timm's pretrained {hub_id}, downloaded once per node into the hub cache"
    raise WeightsError(
        f"model.init='imagenet' for {backbone!r}: offline and the hub cache "
        f"({_hub_cache()}) has no {hub_id}; name a local file under [weights] in the catalog "
        f"({backbone} = \"/path/to/{backbone}.safetensors\"), or pre-fetch it on each node with "
        f"`hf download {hub_id}` (HF_HOME shared by the node's trials)"
    )


def check_named_weights(weights: str, backbone: str, init: str) -> str:
    """Preflight of an explicit ``model.weights``: an ``s3://`` object exists; a local file
    exists and, for ImageNet init, is a state dict that fits the backbone."""
    if "://" in weights:
        return _check_remote(weights)
    if init == "imagenet":
        return _check_file(weights, backbone)
    if not os.path.exists(os.path.expanduser(weights)):
        raise WeightsError(f"model.weights {weights!r}: no such file or folder")
    return weights


def local_weights(backbone: str, catalog_path: str | Catalog | None) -> str:
    """In the trial: a local file for ``model.weights`` (an ``s3://`` entry downloaded once
    per node), or :data:`TIMM_PRETRAINED` when the catalog names none."""
    named = catalog_weights(backbone, catalog_path)
    if not named:
        return TIMM_PRETRAINED
    if "://" in named:
        from orchestrator.store.storage import local_cache

        return local_cache(named)
    return os.path.expanduser(named)


def catalog_weights(backbone: str, catalog_path: str | Catalog | None) -> str | None:
    """The catalog's ``[weights]`` entry for ``backbone`` (a catalog object, file or None)."""
    if catalog_path is None:
        return None
    if isinstance(catalog_path, str):
        from orchestrator.data.catalog import Catalog

        catalog = Catalog.from_file(catalog_path)
    else:
        catalog = catalog_path
    return catalog.weights.get(backbone)


def hub_model_id(backbone: str) -> str:
    """timm's hub id for ``backbone``'s default pretrained tag (``timm/hrnet_w32.ms_in1k``)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(backbone)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        raise WeightsError(
            f"model.init='imagenet': timm has no hub weights for {backbone!r}; name a local "
            f"file under [weights] in the catalog, or use model.init='random'"
        )
    return str(hub_id)


def hub_cached_file(hub_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for name in HUB_FILES:
        path = try_to_load_from_cache(hub_id, name, cache_dir=_hub_cache())
        if isinstance(path, str):
            return path
    return None


def _hub_cache() -> str:
    """Read at call time: huggingface_hub fixes its constants when first imported."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return os.path.join(home, "hub")


def hub_reachable(hub_id: str, timeout: float = 5.0) -> bool:
    """Whether the hub answers for ``hub_id`` now (a driver offline, or behind a proxy that
    blocks it, must fail in the preflight rather than in every trial)."""
    import urllib.request

    from huggingface_hub import constants

    request = urllib.request.Request(f"{constants.ENDPOINT}/api/models/{hub_id}", method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except OSError:
        return False


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _check_remote(uri: str) -> str:
    from orchestrator.store.storage import filesystem_for

    fs, path = filesystem_for(uri, None)
    if not fs.exists(path):
        raise WeightsError(f"[weights] {uri}: no such object")
    return f"{uri} (fetched once per node)"


def _check_file(named: str, backbone: str) -> str:
    from pose_core.models import create_backbone, read_state_dict

    path = os.path.expanduser(named)
    if not os.path.isfile(path):
        raise WeightsError(f"[weights] {backbone} = {named!r}: no such file")
    try:
        state = read_state_dict(path)
    except Exception as error:  # torch and safetensors raise many types for bad files
        raise WeightsError(f"[weights] {path}: not a loadable state dict: {error}") from None
    target = create_backbone(backbone).state_dict()
    fits = sum(1 for k, v in state.items() if _fits(k, v.shape, target))
    if not fits:
        raise WeightsError(f"[weights] {path}: none of its {len(state)} tensors fits timm "
                           f"backbone {backbone!r}; is it a state dict of that classifier?")
    return f"{backbone}: {path} ({fits} of {len(target)} backbone tensors fit)"


def _fits(key: str, shape: object, target: dict[str, object]) -> bool:
    from pose_core.models import _backbone_key

    name = _backbone_key(key, target)  # type: ignore[arg-type]
    return name is not None and getattr(target[name], "shape", None) == shape

"""Ray's start-up warnings that ask nothing of a posetune user, settled before Ray prints them.

Measured on Ray 2.60 (a local ``ray.init()`` and ``posetune demo`` on 2 cores): the only
warning a normal run prints is ``Token authentication is enabled for this Ray cluster. Set
RAY_AUTH_MODE=disabled to opt out``. Ray logs it whenever it turns token authentication on
by itself, that is, when ``RAY_AUTH_MODE`` is unset and it starts a local cluster or finds one
(``address`` None or ``"auto"``) while a token exists. Nothing needs doing: the token lives in
``~/.ray/auth_token`` (Ray creates it on first use) and local clients read it from there.
Setting ``RAY_AUTH_MODE=token`` states that same choice explicitly; Ray then keeps it and stays
quiet. An explicit cluster address is left alone: there Ray never turns auth on by itself and
never warns, and a forced token mode would refuse a cluster that runs without one.

Ray reads the mode into its config when ``ray`` is imported. Set later without a reload, the
cluster's processes (which read the environment) require a token that this driver never sends,
and ``ray.init`` fails with a GCS start-up timeout (tried: Ray 2.60, 2 cores).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

AUTH_MODE = "RAY_AUTH_MODE"
LOCAL_ADDRESSES = (None, "", "auto", "local")


def local_ray_settings(address: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """Environment variables to set before ``ray.init`` for a cluster at ``address``.

    ``address`` is what posetune will pass to ``ray.init`` first (None, ``"auto"``, ``"local"``
    or ``host:port``); ``environ`` is the current environment. A user's own ``RAY_AUTH_MODE``
    stands. Apply with ``os.environ.setdefault`` before the first ``ray.init`` of the process:
    Ray reads the mode once, when its config is first loaded.
    """
    if AUTH_MODE in environ or address not in LOCAL_ADDRESSES:
        return {}
    return {AUTH_MODE: "token"}


def apply_local_ray_settings(address: str | None) -> dict[str, str]:
    """Set ``local_ray_settings`` in ``os.environ`` before this process's first ``ray.init``.

    If ``ray`` is already imported its config is reloaded, as Ray does when it turns token
    auth on itself; where that is not possible nothing is set (Ray warns, nothing breaks).
    Returns what was set.
    """
    environ = os.environ
    settings = local_ray_settings(address, environ)
    ray = sys.modules.get("ray")
    if not settings or (ray is not None and ray.is_initialized()):
        return {}
    environ.update(settings)
    if ray is not None and not _reload_ray_config():
        for key in settings:
            del environ[key]
        return {}
    return settings


def _reload_ray_config() -> bool:
    """The reload Ray itself does after it sets RAY_AUTH_MODE (``_enable_token_auth``)."""
    try:
        from ray._raylet import Config  # type: ignore[attr-defined]  # a Cython module

        Config.initialize("")
    except (ImportError, AttributeError):
        return False
    return True

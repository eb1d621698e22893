"""What a sweep connects to, checked in seconds before the preflight and before Ray starts.

A tracking server (``--log mlflow=http://HOST:PORT``) or a Ray cluster (``--address``,
``RAY_ADDRESS``) that does not answer would otherwise cost minutes: MLflow's client retries
with backoff for about 4.5 minutes before its traceback, and ``ray.init`` waits as long for
a GCS that is not there. Each check returns one line naming the address and where it came
from, or None when it answers within :data:`TIMEOUT_S`.
"""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from urllib.parse import urlsplit

TIMEOUT_S = 5.0


def tcp_problem(host: str, port: int, timeout: float = TIMEOUT_S) -> str | None:
    """None when ``host:port`` accepts a TCP connection within ``timeout``, else why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as error:
        return error.strerror or type(error).__name__


def http_problem(url: str, timeout: float = TIMEOUT_S) -> str | None:
    """None when an HTTP server answers at ``url`` (any status: a 401 or 404 still answers)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 (http(s) only)
            return None
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, TimeoutError):
            return f"no answer within {timeout:g} s"
        return getattr(reason, "strerror", None) or str(reason)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as error:
        return error.strerror or type(error).__name__


def host_port(address: str, default_port: int | None = None) -> tuple[str, int] | None:
    """``"10.0.0.5:6379"`` -> ("10.0.0.5", 6379); ``"[::1]:6379"`` too; None if unparsable."""
    split = urlsplit(f"//{address}")
    try:
        port = split.port or default_port
    except ValueError:
        return None
    if not split.hostname or port is None:
        return None
    return split.hostname, port


def address_problem(address: str | None, source: str) -> str | None:
    """The Ray cluster a sweep is told to join answers, or one line saying why not.

    ``source`` names where the address came from (``--address`` or ``RAY_ADDRESS``). No
    address, or ``local``, starts a cluster of the sweep's own: nothing to check.
    """
    if not address or address == "local":
        return None
    given = f"{source} {address}" if source.startswith("--") else f"{source}={address}"
    if address.startswith(("http://", "https://")):
        return (f"{given}: an HTTP address (the dashboard's, for `ray job submit`); a sweep "
                "joins the cluster's GCS address, HEAD_IP:6379, or 'auto' on a cluster node")
    if address == "auto":
        found = running_cluster()
        if found is None:
            return None  # Ray moved its lookup: ray.init finds the cluster or says why not
        bootstrap, why_not = found
        if why_not:
            return (f"{given}: no Ray cluster to join on this node ({why_not}); start one "
                    "with `ray start --head`, or leave the address out for a cluster of the "
                    "sweep's own")
        target, shown = host_port(bootstrap), bootstrap
    elif address.startswith("ray://"):
        target, shown = host_port(address[len("ray://"):], 10001), address
    elif "://" in address:
        return f"{given}: unknown scheme; give HEAD_IP:6379, ray://HEAD_IP:10001 or auto"
    else:
        target, shown = host_port(address), address
    if target is None:
        return f"{given}: expected HOST:PORT, e.g. 10.0.0.5:6379"
    why = tcp_problem(*target)
    if why is None:
        return None
    return (f"{given}: the Ray cluster at {shown} does not answer ({why}); check the address "
            "and that the cluster is up, or leave it out for a cluster of the sweep's own")


def running_cluster() -> tuple[str, str] | None:
    """``(GCS address, "")`` of the Ray cluster ``ray start`` last started on this node, as
    ``ray.init(address="auto")`` finds it, or ``("", why)`` when there is none to find;
    None when this Ray has no such lookup."""
    try:
        from ray._private.services import canonicalize_bootstrap_address_or_die
    except ImportError:
        return None
    try:
        return str(canonicalize_bootstrap_address_or_die("auto")), ""
    except (ConnectionError, ValueError) as error:
        first = str(error).strip().split(". ")[0].rstrip(".")  # Ray's first sentence
        return "", first or type(error).__name__

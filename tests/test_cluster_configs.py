"""Offline checks of everything under cluster/: the files a user runs against real clusters.

Cluster launcher YAMLs go through Ray's own `prepare_config` + `validate_config` (the same
steps, and the same ray-schema.json, that `ray up` uses before it touches a cloud API). The
KubeRay manifest is checked structurally, the runtime env through Ray's own parser and exclude
matcher, and every file for anything that looks like a credential. Each check also runs on a
deliberately broken copy to show it can fail.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml
from ray._private.runtime_env.packaging import _get_excludes
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
from ray.runtime_env import RuntimeEnv

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHER_FILES = ("aws-gpu.yaml", "onprem.yaml")
UPLOAD_LIMIT_BYTES = 100 * 1024 * 1024  # Ray's working_dir upload limit (RAY_NOTES §6)


def _load(path: Path) -> Any:
    with open(path) as f:
        return yaml.safe_load(f)


def _ray_validate(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does to a config before any provider call; raises on an invalid one."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _launcher_files() -> list[str]:
    return sorted(
        p.name
        for p in CLUSTER.glob("*.yaml")
        if isinstance(cfg := _load(p), dict) and "provider" in cfg and "cluster_name" in cfg
    )


# ----------------------------------------------------------------------------- launcher YAMLs


def test_every_launcher_yaml_is_found() -> None:
    assert _launcher_files() == sorted(LAUNCHER_FILES)


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_launcher_yaml_passes_rays_own_validation(name: str) -> None:
    prepared = _ray_validate(_load(CLUSTER / name))
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize("name", LAUNCHER_FILES)
@pytest.mark.parametrize(
    ("good", "typo"),
    [("setup_commands:", "setup_comands:"), ("ssh_user:", "ssh_usr:")],
)
def test_mistyped_copy_is_rejected(name: str, good: str, typo: str, tmp_path: Path) -> None:
    text = (CLUSTER / name).read_text()
    assert good in text
    broken = tmp_path / name
    broken.write_text(text.replace(good, typo, 1))
    with pytest.raises(jsonschema.ValidationError, match=typo.rstrip(":")):
        _ray_validate(_load(broken))


def test_unknown_node_type_key_is_rejected() -> None:
    config = _load(CLUSTER / "aws-gpu.yaml")
    config["available_node_types"]["ray.worker.g5"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError, match="min_worker"):
        _ray_validate(config)


def _start_command_problems(config: dict[str, Any]) -> list[str]:
    """Token auth on every node, dashboard on loopback, TRAIN_DRIVER offered by the head."""
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    problems = []
    if "--dashboard-host=127.0.0.1" not in head:
        problems.append("head dashboard is not bound to 127.0.0.1")
    for role, cmd in (("head", head), ("worker", worker)):
        if "RAY_AUTH_MODE=token ray start" not in cmd:
            problems.append(f"{role} ray start runs without RAY_AUTH_MODE=token")
    if "~/.ray/auth_token" not in config.get("file_mounts", {}):
        problems.append("token auth is on but ~/.ray/auth_token is not copied to the nodes")
    setup = " ".join(config["setup_commands"])
    if not re.search(r"pip install .*posetune", setup):
        problems.append("setup_commands do not install posetune")
    return problems


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_start_and_setup_commands(name: str) -> None:
    config = _load(CLUSTER / name)
    assert _start_command_problems(config) == []
    broken = copy.deepcopy(config)
    broken["head_start_ray_commands"] = [
        c.replace("127.0.0.1", "0.0.0.0") for c in config["head_start_ray_commands"]
    ]
    broken["worker_start_ray_commands"] = ["ray start --address=$RAY_HEAD_IP:6379"]
    assert len(_start_command_problems(broken)) == 2


def _pinned_ray_minor() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ray_dep = next(d for d in deps if d.startswith("ray["))
    found = re.search(r"(\d+\.\d+)", ray_dep)
    assert found, ray_dep
    return found.group(1)


def test_aws_layout() -> None:
    config = _load(CLUSTER / "aws-gpu.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = {k: v for k, v in types.items() if k != config["head_node_type"]}
    # Trial drivers must have a home on the on-demand head and nowhere else.
    assert head["resources"]["TRAIN_DRIVER"] >= 1
    assert "InstanceMarketOptions" not in head["node_config"]
    assert all("TRAIN_DRIVER" not in w["resources"] for w in workers.values())
    g5 = [w for w in workers.values() if w["node_config"]["InstanceType"] == "g5.xlarge"]
    assert len(g5) == 1 and g5[0]["max_workers"] >= g5[0]["min_workers"] >= 0
    for worker in workers.values():
        assert worker["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    # Credentials come from instance profiles, so every node type names one.
    for node_type in types.values():
        assert node_type["node_config"]["IamInstanceProfile"]["Name"]
    assert sum(w.get("min_workers", 0) for w in workers.values()) <= config["max_workers"]


def test_docker_image_matches_the_pinned_ray_version() -> None:
    image = _load(CLUSTER / "aws-gpu.yaml")["docker"]["image"]
    found = re.fullmatch(r"rayproject/ray:(\d+\.\d+)\.\d+-py3\d+-gpu", image)
    assert found, image
    assert found.group(1) == _pinned_ray_minor()
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"ARG RAY_IMAGE={image}\n" in dockerfile


@pytest.mark.parametrize("name", LAUNCHER_FILES)
def test_checkout_sync_excludes_heavy_folders(name: str) -> None:
    config = _load(CLUSTER / name)
    assert config["file_mounts"]["~/posetune"] == "."
    assert {"/.git", "/.venv", "/data", "/runs", "/checkpoints"} <= set(config["rsync_exclude"])


# ----------------------------------------------------------------------------- KubeRay RayJob


def _gpu_limit(container: dict[str, Any]) -> int:
    return int(container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))


def rayjob_problems(doc: Any) -> list[str]:
    """Structural problems of a KubeRay RayJob manifest for a posetune sweep."""
    if not isinstance(doc, dict):
        return ["not a mapping"]
    problems = []
    if doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") != "RayJob":
        problems.append("apiVersion/kind must be ray.io/v1 RayJob")
    if not doc.get("metadata", {}).get("name"):
        problems.append("metadata.name missing")
    spec = doc.get("spec", {})
    if not str(spec.get("entrypoint", "")).startswith("posetune sweep "):
        problems.append("entrypoint does not run `posetune sweep`")
    if spec.get("shutdownAfterJobFinishes") is not True:
        problems.append("shutdownAfterJobFinishes is not true")
    yaml.safe_load(spec.get("runtimeEnvYAML", "{}"))
    cluster = spec.get("rayClusterSpec", {})
    if not str(cluster.get("rayVersion", "")).startswith(_pinned_ray_minor() + "."):
        problems.append("rayVersion does not match the pinned Ray version")
    head_pod = cluster.get("headGroupSpec", {}).get("template", {}).get("spec", {})
    pods = [head_pod]
    if not head_pod.get("containers"):
        problems.append("head pod has no containers")
    groups = cluster.get("workerGroupSpecs") or []
    if not groups:
        problems.append("no worker group")
    for group in groups:
        for key in ("groupName", "replicas", "minReplicas", "maxReplicas"):
            if key not in group:
                problems.append(f"worker group lacks {key}")
        if (
            not group.get("minReplicas", 0)
            <= group.get("replicas", 0)
            <= group.get("maxReplicas", 0)
        ):
            problems.append("worker group replicas outside [minReplicas, maxReplicas]")
        pod = group.get("template", {}).get("spec", {})
        pods.append(pod)
        if not any(_gpu_limit(c) > 0 for c in pod.get("containers", [])):
            problems.append(f"worker group {group.get('groupName')} has no nvidia.com/gpu limit")
    for pod in pods:
        if not pod.get("serviceAccountName"):
            problems.append("a pod runs without a service account (no S3 credentials)")
        for container in pod.get("containers", []):
            if not container.get("image"):
                problems.append("a container has no image")
    return problems


def test_rayjob_manifest_structure() -> None:
    doc = _load(CLUSTER / "rayjob.yaml")
    assert rayjob_problems(doc) == []
    assert "--results s3://" in doc["spec"]["entrypoint"]
    resources = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["resources"]
    # KubeRay passes the value to `ray start --resources=` verbatim: a quoted JSON object.
    assert json.loads(json.loads(resources)) == {"TRAIN_DRIVER": 4}


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(kind="RayCluster"),
        lambda d: d["spec"].update(entrypoint="python train.py"),
        lambda d: d["spec"].pop("shutdownAfterJobFinishes"),
        lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
            "containers"
        ][0]["resources"]["limits"].pop("nvidia.com/gpu"),
        lambda d: d["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"].pop(
            "serviceAccountName"
        ),
        lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0].pop("maxReplicas"),
    ],
)
def test_broken_rayjob_is_reported(mutate: Callable[[dict[str, Any]], Any]) -> None:
    doc = _load(CLUSTER / "rayjob.yaml")
    mutate(doc)
    assert rayjob_problems(doc)


# ----------------------------------------------------------------------------- runtime env


def test_runtime_env_parses_with_rays_parser() -> None:
    env = parse_runtime_env_args(runtime_env=str(CLUSTER / "runtime_env.yaml"))
    RuntimeEnv(**env)  # Ray's own field validation
    assert env["working_dir"] == "."
    assert {".git", ".venv", "/data", "/runs", "/checkpoints", "*.parquet"} <= set(env["excludes"])
    assert all(isinstance(v, str) for v in env.get("env_vars", {}).values())


def test_runtime_env_excludes_match_what_they_should(tmp_path: Path) -> None:
    excludes = _load(CLUSTER / "runtime_env.yaml")["excludes"]
    excluded = _get_excludes(tmp_path, excludes)
    dropped = [
        ".git/config",
        ".venv/bin/python",
        "data/img/1.jpg",
        "runs/a/b.json",
        "checkpoints/best.pt",
        "out/part-0.parquet",
        "pose_core/__pycache__/x.pyc",
    ]
    kept = [
        "pose_core/records.py",
        "pose_core/data/__init__.py",
        "orchestrator/cli/parser.py",
        "search_spaces/two_stage.py",
        "pyproject.toml",
    ]
    for rel in dropped + kept:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    assert [r for r in dropped if not excluded(tmp_path / r)] == []
    assert [r for r in kept if excluded(tmp_path / r)] == []


def _upload_bytes(root: Path, excluded: Callable[[Path], bool]) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not excluded(here / d)]
        total += sum(
            (here / f).stat().st_size
            for f in filenames
            if not excluded(here / f) and not (here / f).is_symlink()
        )
    return total


def test_checkout_upload_fits_rays_limit() -> None:
    excludes = _load(CLUSTER / "runtime_env.yaml")["excludes"]
    assert _upload_bytes(REPO, _get_excludes(REPO, excludes)) < UPLOAD_LIMIT_BYTES


# ----------------------------------------------------------------------------- no credentials

SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "AWS secret key name": re.compile(r"aws_secret_access_key|aws_session_token", re.I),
    "password field": re.compile(r"password\s*[:=]", re.I),
    "private key block": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "inline secret": re.compile(r"(secret|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{32,}", re.I),
}


def credential_findings(root: Path) -> list[str]:
    """'file: kind' for every text file under root that looks like it holds a credential."""
    findings = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        text = path.read_text(errors="replace")
        findings += [
            f"{path.relative_to(root)}: {kind}"
            for kind, pattern in SECRET_PATTERNS.items()
            if pattern.search(text)
        ]
    return findings


def test_no_credentials_under_cluster() -> None:
    assert credential_findings(CLUSTER) == []


@pytest.mark.parametrize(
    ("file", "planted", "kind"),
    [
        ("runtime_env.yaml", "  AWS_ACCESS_KEY_ID: " + "AKIA" + "Q" * 16, "AWS access key id"),
        ("aws-gpu.yaml", "# aws_secret_" + "access_key = abc", "AWS secret key name"),
        ("rayjob.yaml", "# pass" + "word: hunter2", "password field"),
        ("README.md", "-----BEGIN RSA PRIVATE" + " KEY-----", "private key block"),
        ("onprem.yaml", "# auth_tok" + "en: " + "x9" * 20, "inline secret"),
    ],
)
def test_planted_secret_is_found(file: str, planted: str, kind: str, tmp_path: Path) -> None:
    copy_root = tmp_path / "cluster"
    shutil.copytree(CLUSTER, copy_root, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy_root / file, "a") as f:
        f.write("\n" + planted + "\n")
    assert credential_findings(copy_root) == [f"{file}: {kind}"]


# ----------------------------------------------------------------------------- run_sweep.py


def _run_sweep_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_sweep", CLUSTER / "run_sweep.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_build_command() -> None:
    build = _run_sweep_module().build_command
    args = ["two_stage", "--results", "s3://b/p", "--set", "train.lr=1e-4"]
    # The head's own cluster is joined explicitly; a sweep never joins one by accident.
    assert build(args) == ["posetune", "sweep", *args, "--address", "auto"]
    assert build(["sweep", *args]) == ["posetune", "sweep", *args, "--address", "auto"]
    assert build([*args, "--address", "10.0.0.1:6379"])[-2:] == ["--address", "10.0.0.1:6379"]
    for bad in ([], ["--smoke"], ["sweep"]):
        with pytest.raises(ValueError, match="experiment"):
            build(bad)


def _run_script(args: list[str], path_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(path_dir)}
    return subprocess.run(
        [sys.executable, str(CLUSTER / "run_sweep.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_run_sweep_execs_posetune(tmp_path: Path) -> None:
    record = tmp_path / "argv.txt"
    fake = tmp_path / "bin" / "posetune"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > {record}\nexit 7\n')
    fake.chmod(0o755)
    done = _run_script(["two_stage", "--smoke", "--results", "s3://b/p"], fake.parent)
    assert done.returncode == 7, done.stderr  # the CLI's own status: exec, not a child
    assert record.read_text().split() == ["sweep", "two_stage", "--smoke", "--results", "s3://b/p",
                                          "--address", "auto"]


def test_run_sweep_reports_missing_cli_and_arguments(tmp_path: Path) -> None:
    missing = _run_script(["two_stage"], tmp_path)
    assert missing.returncode == 2 and "not installed" in missing.stderr
    no_args = _run_script([], tmp_path)
    assert no_args.returncode == 2 and "usage:" in no_args.stderr


# ----------------------------------------------------------------------------- README


def test_readme_names_only_existing_cluster_files() -> None:
    text = (CLUSTER / "README.md").read_text()
    named = set(re.findall(r"\bcluster/([\w.-]+\.(?:yaml|py|md)|Dockerfile)\b", text))
    assert {
        "aws-gpu.yaml",
        "onprem.yaml",
        "runtime_env.yaml",
        "rayjob.yaml",
        "run_sweep.py",
    } <= named
    assert [n for n in sorted(named) if not (CLUSTER / n).exists()] == []

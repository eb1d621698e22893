"""A two-stage smoke sweep whose results, Tune state and checkpoints all live on S3.

The S3 server is SeaweedFS on 127.0.0.1; credentials reach the Ray workers through the
environment, as they would through an instance profile's variables on a cluster.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from orchestrator.store.query import query
from orchestrator.store.results import ResultsStore
from orchestrator.study.experiment import Experiment, Grid, Stage
from orchestrator.study.trials import SweepOptions
from pose_core.config import TrialConfig, with_values

pytestmark = [pytest.mark.s3, pytest.mark.ray]


@pytest.fixture(scope="module")
def s3_ray(s3_server: Any) -> Any:
    import ray

    env = {"POSETUNE_S3_ENDPOINT": s3_server.endpoint_url, "AWS_ACCESS_KEY_ID": s3_server.key,
           "AWS_SECRET_ACCESS_KEY": s3_server.secret}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
    yield s3_server
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_two_stage_sweep_on_s3(s3_ray: Any) -> None:
    """Stage 1 starts from ImageNet-style weights that live on S3 (fetched like a
    checkpoint), stage 2 from stage 1's checkpoint on S3."""
    import io

    import timm
    import torch

    from orchestrator.run.driver import run_sweep
    from orchestrator.store.storage import filesystem_for, write_bytes_atomic

    results = s3_ray.uri("sweeps", "two_stage")
    weights = s3_ray.uri("weights", "hrnet_w18_small.pth")
    buffer = io.BytesIO()
    torch.save(timm.create_model("hrnet_w18_small", pretrained=False).state_dict(), buffer)
    write_bytes_atomic(weights, buffer.getvalue())
    experiment = Experiment(
        name="s3_test", description="test",
        baseline=with_values(TrialConfig(), {"model.backbone": "hrnet_w18_small",
                                             "model.init": "random"}),
        stages=(
            Stage(name="pre", changes={"model.init": "imagenet", "model.weights": weights}),
            Stage(name="fine", axes={"data.real_count": Grid(10)},
                  changes={"data.base": None, "model.init": "checkpoint",
                           "model.weights": "@best:pre"}, depends_on=("pre",)),
        ),
    )
    run_sweep(experiment, SweepOptions(results=results, smoke=True), lambda line: None)
    rows = {r["stage"]: r for r in ResultsStore(results).read_trials().to_pylist()}
    assert rows["pre"]["status"] == rows["fine"]["status"] == "ok"
    assert rows["pre"]["init"] == "imagenet"
    assert weights in json.loads(rows["pre"]["config_json"])["model"]["weights"]
    checkpoint = rows["pre"]["checkpoint_uri"]
    assert checkpoint.startswith(results + "/tune/")  # Ray's checkpoints are on S3 too
    fs, path = filesystem_for(checkpoint)
    assert fs.exists(path + "/checkpoint.pt")
    assert rows["fine"]["init_checkpoint"] == checkpoint  # stage 2 started from S3
    table = query(results, "SELECT stage, count(*) AS n FROM epochs GROUP BY stage ORDER BY stage")
    assert table.to_pylist() == [{"stage": "fine", "n": 2}, {"stage": "pre", "n": 2}]
    assert not ResultsStore(results).spooled_files()


def test_catalog_dataset_on_s3_is_cached_locally(s3_server: Any, shared_data: Any,
                                                 tmp_path: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalog entry with s3:// annotations and images is downloaded once, then read."""
    from orchestrator.data.catalog import Catalog
    from orchestrator.store.storage import filesystem_for

    monkeypatch.setenv("POSETUNE_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setenv("POSETUNE_CACHE_DIR", str(tmp_path / "cache"))
    source = shared_data / "animalpose"
    fs, root = filesystem_for(s3_server.uri("data", "animalpose"))
    fs.put(str(source / "annotations.json"), f"{root}/annotations.json")
    fs.put(str(source / "images"), f"{root}/images", recursive=True)
    catalog_file = tmp_path / "catalog.toml"
    catalog_file.write_text(
        f'[datasets.lynx-test]\ncoco = "s3://{root}/annotations.json"\n'
        f'images = "s3://{root}/images"\n')
    catalog = Catalog.from_file(catalog_file)
    instances, skeleton, report = catalog.load("lynx-test")
    assert skeleton.name == "animalpose" and report.kept == len(instances) == 2
    assert all(str(tmp_path / "cache") in inst.image_path for inst in instances)
    fs.rm(root, recursive=True)  # now served from the local cache
    again, _, _ = catalog.load("lynx-test")
    assert [i.image_path for i in again] == [i.image_path for i in instances]


def test_second_sweep_into_an_s3_store_is_refused_while_the_first_holds_it(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.store import lock as store_lock

    monkeypatch.setenv("POSETUNE_S3_ENDPOINT", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret)
    monkeypatch.setattr(store_lock, "SETTLE_S", 0.1)
    uri = s3_server.uri("sweeps", "locked")
    with store_lock.store_lock(uri):
        with pytest.raises(store_lock.StoreBusy) as busy:
            with store_lock.store_lock(uri):
                pass
        assert uri in str(busy.value) and "expires" in str(busy.value)
    with store_lock.store_lock(uri):  # released: the next sweep gets it
        pass

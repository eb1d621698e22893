"""The ``posetune`` subcommands' handlers: arguments in, typed calls out (the parser is in
:mod:`orchestrator.cli.parser`). Heavy modules (torch, Ray) are imported inside the handlers."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXIT_FAILED = 3  # some trial failed, or a stage could not start (orchestrator.run.driver)


def parse_set(values: Sequence[str]) -> dict[str, Any]:
    """``--set train.lr=1e-4`` -> {"train.lr": 0.0001}; values parse as JSON, else strings."""
    out: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=1e-4")
        key, raw = item.split("=", 1)
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from orchestrator.cli.listing import listing_markdown, listing_text
    from orchestrator.study.files import describe_all

    rows = describe_all(args.path)
    if not rows:
        where = args.path or "search_spaces"
        raise ValueError(f"no experiment files in {where} (a .py file that assigns "
                         "EXPERIMENT or calls Experiment(...))")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(listing_markdown(rows) if args.markdown else listing_text(rows), end="")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from orchestrator.study.starter import write_starter

    print(write_starter(args.file, force=args.force, data=args.data))
    return 0


def sweep_options(args: argparse.Namespace, results: str) -> Any:
    from orchestrator.study.trials import SweepOptions

    return SweepOptions(
        results=results, catalog=args.catalog, scale=args.scale, smoke=args.smoke,
        seeds=args.seeds,
        overrides=parse_set(args.set or []), resume=args.resume, workers=args.workers,
        cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
        max_concurrent=args.max_concurrent, optuna_storage=args.optuna_storage,
        max_failures=args.max_failures, stages=tuple(args.stage or ()),
        tune_storage=args.tune_storage, ray_address=args.address, debug=args.debug,
        runner=args.runner, loggers=tuple(getattr(args, "log", None) or ()),
        reuse=not args.no_reuse, redraw_subsets=getattr(args, "redraw_subsets", False),
        fork=not getattr(args, "no_fork", False),
    )


def cmd_sweep(args: argparse.Namespace) -> int:
    import dataclasses

    from orchestrator.run.driver import run_sweep
    from orchestrator.run.trackers import check_trackers
    from orchestrator.store.query import format_table
    from orchestrator.study.files import load_experiment, names

    experiment = load_experiment(args.experiment)
    results = args.results or f"runs/{experiment.name}"
    if (args.calibrate or args.throughput) and not args.plan:
        print("posetune sweep: --calibrate and --throughput go with --plan", file=sys.stderr)
        return 2
    options = sweep_options(args, results)
    # What the sweep connects to answers now, in seconds, not minutes after Ray started.
    loggers, problems = check_trackers(options.loggers, results)
    options = dataclasses.replace(options, loggers=tuple(loggers))
    problems += ray_address_problems(args.address)
    if args.plan:
        from orchestrator.run.driver import plan_sweep

        plan_sweep(experiment, options, args.throughput, calibrate=args.calibrate,
                   problems=problems)
        return 0
    if problems:
        raise ValueError(problems[0])
    outcome = run_sweep(experiment, options)
    if not outcome.interrupted:  # after Ctrl-C the interruption line is what comes next
        print_results(outcome.store, experiment.name, format_table,
                      study_table=args.experiment in names())
    return report_outcome(outcome)


def ray_address_problems(address: str | None) -> list[str]:
    """The Ray cluster to join (``--address``, else ``RAY_ADDRESS``) answers, or why not."""
    import os

    from orchestrator.run.reachable import address_problem

    source = "--address" if address else "RAY_ADDRESS"
    problem = address_problem(address or os.environ.get("RAY_ADDRESS"), source)
    return [problem] if problem else []


def report_outcome(outcome: Any) -> int:
    """The sweep's exit code, with the lines that explain a non-zero one on stderr."""
    code = int(outcome.exit_code)
    if outcome.interrupted:
        print(f"posetune: interrupted; finished trials are saved in {outcome.store.uri}. "
              f"Continue with: {resume_command()}", file=sys.stderr)
    for failure in outcome.failures[:10]:
        print(f"posetune: trial failed: {failure}", file=sys.stderr)
    if len(outcome.failures) > 10:
        print(f"posetune: ... and {len(outcome.failures) - 10} more failed trial(s)",
              file=sys.stderr)
    for line in outcome.not_started:
        print(f"posetune: stage not started: {line}", file=sys.stderr)
    if code == EXIT_FAILED:
        print(f"posetune: {outcome.counts.get('failed', 0)} trial(s) failed (exit {code}); "
              "rerun with --resume to retry only those", file=sys.stderr)
    return code


def resume_command() -> str:
    """The command line this process was started with, plus --resume."""
    import shlex

    argv = ["posetune", *sys.argv[1:]] if sys.argv else ["posetune"]
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(argv)


def print_results(store: Any, experiment: str, format_table: Any,
                  study_table: bool = True) -> None:
    """The sweep's rows, and the commands that show them (each runs as printed): a shipped
    experiment's study table (``study_table``), else the generic table of any experiment."""
    from orchestrator.store.query import QUERY_TABLES, query

    sql = (
        "SELECT stage, variant_id, seed, status, printf('%.3f', AP) AS AP, "
        "printf('%.3f', AP75) AS AP75, printf('%.3f', AP85) AS AP85, "
        "printf('%.3f', PCK05) AS PCK05, epochs_run, CAST(round(wall_s) AS INTEGER) AS wall_s "
        f"FROM trials WHERE experiment = '{experiment}' ORDER BY stage, variant_id, seed"
    )
    print(format_table(query(store.uri, sql), "table"))
    posetune, uri = how_to_rerun(store.uri)
    results = shlex.quote(uri)
    table = (f"{posetune} table {experiment} {results}" if study_table
             else f"{posetune} table {results} --experiment {shlex.quote(experiment)}")
    example = f"\"SELECT variant_id, AP FROM trials WHERE experiment = '{experiment}'\""
    print(f"AP, AP75, AP85 and PCK05 are 0 to 1, higher is better; wall_s is seconds.\n"
          f"Next: {table}\n"
          f"      {posetune} query {results} --sql {example}   "
          f"# tables: {', '.join(QUERY_TABLES)}")


def how_to_rerun(results_uri: str) -> tuple[str, str]:
    """The posetune command as the user typed it, and the results URI as seen from here."""
    import shutil

    from orchestrator.report.demo import invocation, shown_path

    cwd = Path.cwd()
    posetune = invocation(sys.argv[0], shutil.which("posetune"), cwd, sys.executable)
    results = results_uri if "://" in results_uri else shown_path(Path(results_uri), cwd)
    return posetune, results


def cmd_demo(args: argparse.Namespace) -> int:
    import os

    from orchestrator.report.demo import render_demo_report
    from orchestrator.run.driver import run_sweep
    from orchestrator.store.query import query
    from orchestrator.study.files import load_experiment
    from orchestrator.study.trials import SweepOptions

    out = Path(args.out).resolve()
    os.environ["POSETUNE_DATA"] = str(out / "data")
    experiment = load_experiment("quickstart")
    print(f"posetune demo: {experiment.description.splitlines()[0]}")
    print(f"data and results go to {out}")
    options = SweepOptions(results=str(out / "results"), resume=args.resume, debug=args.debug)
    outcome = run_sweep(experiment, options)
    store = outcome.store
    rows = query(store.uri, f"SELECT * FROM trials WHERE experiment = '{experiment.name}'")
    posetune, results = how_to_rerun(store.uri)
    print()
    print(render_demo_report(rows.to_pylist(), posetune, results), end="")
    return report_outcome(outcome)


@contextmanager
def store_reading(args: argparse.Namespace) -> Iterator[None]:
    """Reads of a results store under ``--skip-bad-files``: bad files are skipped and counted
    on stderr; without it the first bad file stops the command (exit 2)."""
    if not args.skip_bad_files:
        yield
        return
    from orchestrator.store.layout import skipping_bad_files

    with skipping_bad_files() as skipped:
        yield
    if skipped:
        named = "; ".join(f"{path} ({why})" for path, why in list(skipped.items())[:3])
        print(f"posetune: skipped {len(skipped)} bad file(s): {named}"
              f"{' ...' if len(skipped) > 3 else ''}", file=sys.stderr)


def cmd_compact(args: argparse.Namespace) -> int:
    from orchestrator.store.compact import compact
    from orchestrator.store.results import ResultsStore

    compact(ResultsStore(args.results), print, skip_bad_files=args.skip_bad_files)
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from orchestrator.store.query import format_table, query

    with store_reading(args):
        table = query(args.results, args.sql)
    print(format_table(table, args.format))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pose_core.metrics import METRIC_NAMES, evaluate_files

    result = evaluate_files(
        args.gt, args.pred, sigmas=args.sigmas, area_rule=args.area_rule,
        pck_normaliser=args.pck_normaliser, pck_threshold=args.pck_threshold,
    )
    if args.json:
        print(result.to_json())
        return 0
    values = result.as_dict()
    for key in METRIC_NAMES:
        print(f"{key:>6}  {values[key]:.4f}")
    print(f"sigmas {values['sigma_set']} ({values['sigma_digest']}), area rule "
          f"{values['area_rule']}, PCK normaliser {values['pck_normaliser']}, "
          f"{values['num_instances']} instances")
    if args.per_keypoint:
        from pose_core.keypoint_table import keypoint_names, keypoint_table

        print(keypoint_table(result, keypoint_names(args.gt)))
    return 0


def cmd_model_info(args: argparse.Namespace) -> int:
    from pose_core.config import ModelConfig
    from pose_core.model_info import model_info

    cfg = ModelConfig(backbone=args.backbone, head=args.head, init="random")
    info = model_info(cfg, num_keypoints=args.keypoints, input_size=args.input)
    values = info.as_dict() if hasattr(info, "as_dict") else dict(vars(info))
    if args.json:
        print(json.dumps(values))
    else:
        for key, value in values.items():
            print(f"{key}: {value}")
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from orchestrator.plan.pretraining import ensure_start, scale_backbones
    from orchestrator.study.scale import get_scale

    scale = get_scale(args.scale)
    if not scale.generated_start:
        raise ValueError(f"scale {scale.name!r} trains from ImageNet weights; generated starts "
                         "are built for: smoke, mini")
    for backbone in args.backbone or scale_backbones(scale):
        ensure_start(scale.generated_start, backbone, lambda line: print(line, flush=True))
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from pose_core.synth import SynthConfig, generate

    config = SynthConfig(images=args.images, seed=args.seed, scenes=args.scenes, style=args.style)

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 20) == 0:
            print(f"\rgenerating {done}/{total} images", end="", file=sys.stderr, flush=True)

    path = generate(args.out, config, progress)
    print(file=sys.stderr)
    print(path)
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from orchestrator.data.labels import to_coco

    report = to_coco(args.format, args.csv, args.out, frames_dir=args.frames, split=args.split,
                     category=args.category, images=args.images)
    print(report.summary(), file=sys.stderr)
    print(args.out)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from orchestrator.infer.predict import run_predict

    outcome = run_predict(args)
    # The predictions of every good image are written; skipped ones make the exit non-zero.
    return EXIT_FAILED if outcome.skipped else 0


def cmd_export(args: argparse.Namespace) -> int:
    from orchestrator.infer.export import choose_trial, export_trial
    from orchestrator.report.experiment_table import final_rows
    from orchestrator.study.files import shipped

    rows, final, _ = final_rows(args.results, args.experiment)
    definition = shipped(rows[0]["experiment"])
    metric, mode = (definition.metric, definition.mode) if definition else ("AP", "max")
    row = choose_trial(rows, final, metric, mode, args.trial)
    # A failed parity check still writes DIR and its parity.json, marked failed.
    return 0 if export_trial(row, args.out, args.catalog).passed else EXIT_FAILED


def named_or_generic(args: argparse.Namespace) -> tuple[str | None, str]:
    """``NAME RESULTS`` (a study table or figure) or ``RESULTS`` (the generic form)."""
    if len(args.target) == 2 and args.experiment is None:
        return args.target[0], args.target[1]
    if len(args.target) == 1:
        return None, args.target[0]
    raise ValueError(f"posetune {args.command}: give NAME RESULTS, or RESULTS [--experiment NAME]")


def cmd_table(args: argparse.Namespace) -> int:
    name, results = named_or_generic(args)
    with store_reading(args):
        if name is not None:
            from orchestrator.report.tables import render_table

            text = render_table(name, results, args.format)
        else:
            from orchestrator.report.experiment_table import render_experiment_table

            text = render_experiment_table(results, args.experiment, args.format)
    print(text)
    return 0


def cmd_findings(args: argparse.Namespace) -> int:
    from orchestrator.report.findings import evaluate, render

    with store_reading(args):
        results = evaluate(args.results, args.metric)
    print(render(results, args.metric))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from orchestrator.report.page import build_report

    print(build_report(args.results, args.out, args.experiment, args.catalog, args.pose_images))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    name, results = named_or_generic(args)
    if name is not None:
        from orchestrator.report.tables import render_plot

        print(render_plot(name, results, args.out))
        return 0
    from orchestrator.report.experiment_table import render_axis_plot

    if not args.x:
        raise ValueError("posetune plot RESULTS needs --x AXIS (e.g. --x train.lr)")
    print(render_axis_plot(results, args.x, args.out, args.metric, args.experiment))
    return 0

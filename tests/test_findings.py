"""The findings check: paired contrasts per seed, 95% intervals and the verdicts (Ray-free)."""

from __future__ import annotations

from pathlib import Path

import search_spaces
from orchestrator.report.findings import FINDINGS, Arm, evaluate, render
from orchestrator.store.results import ResultsStore
from orchestrator.study.trials import SweepOptions, plan
from pose_core.config import TrialConfig, with_values
from tests.test_tables import record


def write_arm(store: ResultsStore, arm: Arm, aps: list[float], start: int) -> None:
    for seed, ap in enumerate(aps):
        config = with_values(TrialConfig(), {"train.seed": seed})
        store.append_trial(record(arm.experiment, "main", arm.variant, config, start + seed,
                                  AP=ap, seed=seed, status="ok"))


def test_every_arm_names_a_variant_the_shipped_experiment_plans() -> None:
    variants: dict[str, set[str]] = {}
    for finding in FINDINGS:
        for arm in (finding.a, finding.b):
            if arm.experiment not in variants:
                planned = plan(search_spaces.load_experiment(arm.experiment),
                               SweepOptions(results="unused"))
                final = list(planned.values())[-1]
                variants[arm.experiment] = {j.variant_id for j in final}
            assert arm.variant in variants[arm.experiment], (finding.number, arm.variant)
    assert [f.number for f in FINDINGS] == list(range(1, 8))


def test_verdicts_follow_the_paired_interval(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    base = [0.30, 0.25, 0.35]
    by_number = {f.number: f for f in FINDINGS}
    # 1: b beats a by ~0.05 in every seed -> agrees (the study's sign is +).
    write_arm(store, by_number[1].a, base, 0)
    write_arm(store, by_number[1].b, [v + 0.05 + d for v, d in zip(base, (0, .01, -.01), strict=True)], 10)
    # 2: b loses by ~0.05 in every seed -> differs. Seed-to-seed spread of 0.05 between the
    # arms' levels would swamp an unpaired interval; paired, the sign is clear.
    write_arm(store, by_number[2].a, base, 20)
    write_arm(store, by_number[2].b, [v - 0.05 + d for v, d in zip(base, (0, .01, -.01), strict=True)], 30)
    # 3: differences of both signs -> within noise.
    write_arm(store, by_number[3].a, base, 40)
    write_arm(store, by_number[3].b, [v + d for v, d in zip(base, (0.05, -0.06, 0.01), strict=True)], 50)
    # 6 ("no gain"): a clear difference -> differs.
    write_arm(store, by_number[6].a, base, 60)
    write_arm(store, by_number[6].b, [v + 0.1 + d for v, d in zip(base, (0, .01, -.01), strict=True)], 70)
    # 5: one seed only -> no interval, no verdict.
    write_arm(store, by_number[5].a, base[:1], 80)
    write_arm(store, by_number[5].b, [0.9], 90)
    results = {r.finding.number: r for r in evaluate(str(tmp_path))}
    assert results[1].verdict == "agrees" and results[1].seeds == 3
    assert abs((results[1].mean or 0) - 0.05) < 1e-9 and results[1].half_width is not None
    assert results[2].verdict == "differs"
    assert results[3].verdict == "within noise"
    assert results[6].verdict == "differs"
    assert results[5].verdict == "one seed: no interval" and results[5].seeds == 1
    assert results[4].verdict == "not run" and results[7].verdict == "not run"
    table = render(list(results.values()))
    assert table.count("\n") == 8 and "| 1 | HRNet-w32 is the best backbone" in table
    assert "+0.050 ± " in table and "±0.000 (no gain)" in table


def test_failed_rows_and_unpaired_seeds_are_left_out(tmp_path: Path) -> None:
    store = ResultsStore(str(tmp_path))
    finding = FINDINGS[0]
    write_arm(store, finding.a, [0.3, 0.3, 0.3], 0)
    write_arm(store, finding.b, [0.4, 0.4], 10)  # seed 2 of arm b never ran
    config = with_values(TrialConfig(), {"train.seed": 1})
    store.append_trial(record(finding.b.experiment, "main", finding.b.variant, config, 20,
                              AP=None, seed=1, status="failed", error="boom"))
    result = evaluate(str(tmp_path))[0]
    assert result.seeds == 1  # seed 1 of arm b failed on its latest attempt; seed 2 is unpaired
    assert result.mean is not None and abs(result.mean - 0.1) < 1e-9

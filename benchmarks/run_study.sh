#!/usr/bin/env bash
# The study's seven experiments at one scale into one store, then every table, Figure 7 and
# the findings check, written to STORE/STUDY.md with the wall time and the machine.
#   benchmarks/run_study.sh SCALE SEEDS STORE      (make study-mini / make study-smoke)
# Order matters only for cost: later experiments reuse the trials earlier ones trained. A rerun
# into the same STORE continues (--resume): finished trials are not trained again.
# ONE_SEED: experiments run with one seed whatever SEEDS says (default at mini: backbones, whose
# contrast is large and whose ResNet stand-ins cost 4-6 CPU-minutes a trial).
# CPU-only: CONCURRENT trials at once (default: one per core, measured 1.33x the throughput of
# one trial on both cores of a 2-core VM).
set -euo pipefail
scale=$1 seeds=$2 store=$3
bin=${BIN:-.venv/bin}
experiments="real_amount backbones synthetic_amount augmentations hyperparameters real_plus_synthetic two_stage"
redraw=""
[ "$seeds" -gt 1 ] && redraw="--redraw-subsets"
default_one=""
[ "$scale" = mini ] && default_one="backbones"
one_seed=" ${ONE_SEED-$default_one} "
mkdir -p "$store"
start=$(date +%s)
for e in $experiments; do
    n=$seeds
    [[ "$one_seed" == *" $e "* ]] && n=1
    echo "== $e (scale $scale, $n seed(s)) =="
    "$bin/posetune" sweep "$e" --scale "$scale" --seeds "$n" $redraw --results "$store" \
        --max-concurrent "${CONCURRENT:-$(nproc)}" --resume
done
wall=$(( $(date +%s) - start ))
out="$store/STUDY.md"
{
    echo "# The study at scale $scale, $seeds seed(s)$([ -n "$redraw" ] && echo ', subsets redrawn per seed')"
    echo
    echo "Wall time $((wall / 60)) min $((wall % 60)) s on $(nproc) CPU core(s), $(uname -m), $(date -u +%Y-%m-%d);"
    echo "posetune $(git rev-parse --short HEAD 2>/dev/null || echo '(no git)'). Figure 7: figure7.png."
    echo
    echo "## Findings"
    echo
    "$bin/posetune" findings "$store"
    for e in $experiments; do
        echo
        "$bin/posetune" table "$e" "$store"
    done
} > "$out"
"$bin/posetune" plot synthetic_amount "$store" --out "$store/figure7.png"
echo "wrote $out and $store/figure7.png (wall time of the sweeps: ${wall} s)"

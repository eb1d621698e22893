"""Everything that can fail before GPU time is spent, checked once, in the driver (Ray-free).

Configs (built by :func:`orchestrator.planning.plan`), the catalog, every dataset a trial
reads (annotations through the readers' checks), sigma sets against the test skeleton,
subset sizes against what each set holds, every initial-weights reference, and that the
results store is writable. Each failure is one line naming what to fix.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.catalog import Catalog
from orchestrator.experiment import Experiment
from orchestrator.planning import SweepOptions, TrialJob, is_reference, plan
from orchestrator.results import ResultsStore
from pose_core.config import TrialConfig
from pose_core.skeletons import resolve_sigmas

Planned = dict[str, list[TrialJob]]


def needed_sizes(planned: Planned) -> dict[str, int]:
    """Images each dataset must provide: the largest count any trial draws from it."""
    needs: dict[str, int] = {}

    def need(name: str | None, count: int | None) -> None:
        if name and count:
            needs[name] = max(needs.get(name, 0), count)

    for jobs in planned.values():
        for job in jobs:
            data = job.config.data
            need(data.base, data.base_count)
            need(data.real, data.real_count)
            need(data.synthetic, data.synthetic_count)
            need(data.test, data.max_test)
    return needs


def make_catalog(options: SweepOptions, planned: Planned) -> Catalog:
    needs = needed_sizes(planned)
    small = options.scale_of.small_datasets
    if options.catalog:
        return Catalog.from_file(options.catalog, small, needs)
    return Catalog.default(small, needs=needs)


def datasets_read(config: TrialConfig) -> set[str]:
    data = config.data
    names = {n for n in (data.base, data.test) if n}
    if data.real and data.real_count:
        names.add(data.real)
    if data.synthetic and data.synthetic_count:
        names.add(data.synthetic)
    return names


def preflight(
    experiment: Experiment, options: SweepOptions, say: Callable[[str], None] = print,
) -> tuple[Planned, Catalog]:
    """Plan every trial and check everything it will read. Returns the jobs (with the
    catalog attached) and the catalog."""
    planned = plan(experiment, options)
    catalog = make_catalog(options, planned)
    names: set[str] = set()
    for jobs in planned.values():
        for job in jobs:
            names |= datasets_read(job.config)
            check_weights(job.config, catalog)
    say(f"checking {len(names)} dataset(s): {', '.join(sorted(names))}")
    available, skeletons = {}, {}
    for name, (report, images, skeleton) in catalog.validate(names, say).items():
        say("  " + report.summary())
        available[name], skeletons[name] = images, skeleton
    for jobs in planned.values():
        for job in jobs:
            # A sigma set that does not fit the test skeleton fails here, not in a worker.
            resolve_sigmas(job.config.eval.sigmas, skeletons[job.config.data.test])
    for name, count in needed_sizes(planned).items():
        if count > available.get(name, count):
            raise ValueError(
                f"a trial draws {count} images from dataset {name!r} but it has only "
                f"{available[name]} ({catalog.entry(name).kind} entry in {catalog.source})"
            )
    ResultsStore(options.results).check_writable()
    return planned, catalog


def check_weights(config: TrialConfig, catalog: Catalog) -> None:
    """Every initial-weights reference a trial will load exists now."""
    model = config.model
    if model.init == "imagenet" and model.weights is None:
        catalog.weights_for(model.backbone)
    weights = model.weights
    if weights and not is_reference(weights) and "://" not in weights:
        import os

        if not os.path.exists(weights):
            raise FileNotFoundError(f"model.weights {weights!r} does not exist")

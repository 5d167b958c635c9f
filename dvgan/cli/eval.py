"""dvgan eval: measure how well a run disentangles, and write the report."""
from __future__ import annotations

import click

from ..engine.backends import BACKENDS, PRECISIONS
from ..errors import UsageError
from .common import friendly_errors, verbosity

EXAMPLES = """
\b
Examples:
  dvgan eval runs/sprites                       # report in runs/sprites/eval
  dvgan eval runs/mnist -o reports/mnist
  dvgan eval runs/sprites runs/sprites-lambda0 -o reports/ablation   # side by side
  dvgan eval runs/sprites --quick               # reduced sets, under a minute
  dvgan eval runs/sprites --bundle bundles/sprites --backend onnxruntime --precision fp16
                                                # the exported bundle's codes and swaps, measured
"""


@click.command(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR [RUN_DIR ...]")
@click.option("-o", "--out", "out_dir", type=click.Path(file_okay=False),
              help="Report folder (default RUN_DIR/eval; with several runs RUN_DIR/eval/compare of the first).")
@click.option("--compare", "others", multiple=True, metavar="OTHER_RUN_DIR",
              help="Another run to evaluate side by side (repeatable); same as listing it after RUN_DIR.")
@click.option("--seed", default=0, show_default=True, help="Seed for probe splits, subsets, pairs and samples.")
@click.option("--quick", is_flag=True, help="Reduced but honest subset (the report says so).")
@click.option("--bundle", type=click.Path(file_okay=False), help="An exported bundle of the run: measure its codes "
              "and swaps on --backend at --precision instead of the run's own weights (one run only).")
@click.option("--backend", type=click.Choice(BACKENDS), default="auto",
              show_default=True, help="With --bundle: the engine backend.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="auto", show_default=True,
              help="With --bundle: the engine precision.")
@verbosity
@friendly_errors
def main(run_dirs, out_dir, others, seed, quick, bundle, backend, precision):
    """Evaluate trained runs on their recorded test split: identity probes (the paper's Table 1),
    retrieval, analogies against the true sprites, and the paper's figures.

    Writes report.json, report.md and PNG figures; with several runs also compare.md / compare.json.
    """
    from ..eval import compare, evaluate
    from ..eval.report import summary_rows

    runs = list(run_dirs) + list(others)
    if bundle is None and (backend, precision) != ("auto", "auto"):
        raise UsageError("--backend and --precision choose how a --bundle runs; give --bundle BUNDLE_DIR")
    if bundle is not None and len(runs) > 1:
        raise UsageError("--bundle measures one run's exported bundle; give one RUN_DIR")
    if len(runs) == 1:
        results = {runs[0]: evaluate(runs[0], out_dir, seed=seed, quick=quick, bundle=bundle, backend=backend,
                                     precision=precision)}
        where = out_dir or f"{runs[0]}/eval"
    else:
        results = compare(runs, out_dir, seed=seed, quick=quick)["runs"]
        where = out_dir or f"{runs[0]}/eval/compare"
    tables = {name: dict(summary_rows(res)) for name, res in results.items()}
    keys = list(next(iter(tables.values())))
    left = max(len(k) for k in keys) + 2
    right = max(16, *(len(v) for t in tables.values() for v in t.values()))
    if len(tables) > 1:
        click.echo(" " * left + "  ".join(f"{name[-right:]:>{right}}" for name in tables))
    for key in keys:
        click.echo(f"{key:<{left}}" + "  ".join(f"{tables[n].get(key, '-'):>{right}}" for n in tables))
    click.echo(f"report: {where}")

"""`dvgan demo`: the main job on the built-in sprites, or on another data set (--data)."""
from __future__ import annotations

import click

from .common import friendly_errors, verbosity

EXAMPLES = """
\b
Examples:
  dvgan demo                 # 6 to 9 minutes on 2 CPU cores (training stops after 6); writes ./dvgan-out
  dvgan demo --smoke         # 200 training steps: checks that every stage runs
  dvgan demo --long -o out/  # all 5,000 steps of the recipe, no time budget, and the full evaluation
  dvgan demo --data lpc:path/to/lpc_sprites -o lpc-out/   # the same on real LPC character sheets
\b
Afterwards these work with no other flag (they read ./dvgan-out, or $DVGAN_HOME):
  dvgan query --by specified dvgan-out/query.png
  dvgan swap -s dvgan-out/query.png -u dvgan-out/gallery -o swap.png
"""


@click.command(name="demo", epilog=EXAMPLES)
@click.option("-o", "--out", default=None, help="Output folder (default: $DVGAN_HOME or ./dvgan-out).")
@click.option("--smoke", "preset", flag_value="smoke", help="Shortest run: checks every stage.")
@click.option("--long", "preset", flag_value="long", help="All the recipe's steps, no time budget, and the full evaluation.")
@click.option("--data", "data_spec", default=None, metavar="SPEC",
              help="Run on this data instead of the built-in sprites (e.g. lpc:DIR); no downloads either way.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda (training and the engine).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@verbosity
@friendly_errors
def demo_cmd(out, preset, data_spec, device, no_progress):
    """Train on procedural sprites (or --data), export, index unseen identities, then query, swap,
    sample, interpolate, evaluate, and write OUT/report.md."""
    from ..demo import pose_errors, pose_r2, run_demo
    res = run_demo(out, preset or "default", device=device, progress=not no_progress, data=data_spec)
    e = res["eval"]
    fmt = lambda v: "n/a" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    click.echo(f"\ndemo finished in {res['seconds']:.0f} s; everything is in {res['out']}")
    t = res["train"]
    if t["steps"] < t["asked_steps"]:
        click.echo(f"  trained {t['steps']} of {t['asked_steps']} steps: that is what fit in the {t['time_budget']} s "
                   "training budget on this machine (dvgan demo --long trains without one)")
    click.echo(f"  identity probe error: s {fmt(e.get('s_test_error'))}, z {fmt(e.get('z_mu_test_error'))} "
               f"(chance {fmt(e.get('chance_error'))})")
    if e.get("analogy_psnr") is not None:
        click.echo(f"  analogy PSNR {e['analogy_psnr']:.1f} dB (best copy baseline {e['best_copy_psnr']:.1f} dB, "
                   f"identity mean {e['identity_mean_psnr']:.1f} dB); "
                   f"s precision@10 {e.get('s_precision_at_10', float('nan')):.2f}")
    if e.get("rotation_r2_z") is not None:
        click.echo(f"  the pose from z, R^2 of x / y / scale / turn: {pose_r2(e, 'z')} (from s: {pose_r2(e, 's')})")
    if e.get("factor_kind") == "categorical":
        click.echo(f"  the pose from z, error: {pose_errors(e, 'z')} (from s: {pose_errors(e, 's')}; "
                   f"chance {pose_errors(e, 'chance')})")
    if e.get("table1_s_error") is not None:
        click.echo(f"  Table 1, attributes of unseen identities: s {fmt(e['table1_s_error'])}, z {fmt(e['table1_z_error'])} "
                   f"(chance {fmt(e['table1_chance'])})")
    if e.get("sample_psnr") is not None:
        click.echo(f"  conditional samples {e['sample_psnr']:.1f} dB to the nearest true render "
                   f"(swaps {e['sample_swap_psnr']:.1f} dB, another identity {e['sample_other_identity_psnr']:.1f} dB)")
    click.echo(f"  report: {res['report']}")
    click.echo(f"  swap grid: {res['swap']}")
    click.echo(f"  try: dvgan query --by specified {res['query']['image']}")

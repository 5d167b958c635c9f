"""dvgan-train: train the disentangling model on identity-labelled images."""
from __future__ import annotations

import click

from .. import __version__
from ..config import ModelConfig, TrainConfig
from ..errors import UsageError
from ..train.recipe import build_configs, recipe_names
from .common import friendly_errors, verbosity

EXAMPLES = """
\b
Examples:
  dvgan-train --data sprites --out runs/sprites
  dvgan-train --data mnist:data/mnist --config configs/mnist.toml --out runs/mnist
  dvgan-train --data photos/ --test-fraction 0.2 --image-size 64 --out runs/faces
  dvgan-train --data lpc:data/lpc_sprites --holdout-identities 100 --out runs/lpc   # 100 unseen characters
  dvgan-train --out runs/sprites --resume            # continue a killed run
  dvgan-train --data sprites --time-budget 1800 --out runs/half-hour   # as many steps as fit in 30 min
  torchrun --nproc_per_node=2 -m dvgan.cli.train --data sprites --out runs/ddp
"""


@click.command(epilog=EXAMPLES, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--data", "data_spec", help="sprites[:PER_ID], mnist:DIR, lpc:DIR (LPC character sheets; lpc+hurt:DIR "
              "adds the hurt row), or a folder with one sub-folder per identity.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Run folder to write.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML recipe with [model], [train], [data]: a file, or a shipped recipe by name (" + ", ".join(recipe_names()) + ").")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint, with the run's own "
                                             "settings (--steps, --time-budget and --device may be given).")
@click.option("--steps", type=int, help="Generator steps (with --resume: the new total).")
@click.option("--batch-size", type=int, help="Triplets per step.")
@click.option("--lr", type=float, help="Encoder/decoder learning rate.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]))
@click.option("--lambda", "w_gan", type=float, help="Adversarial weight (0 = the paper's ablation).")
@click.option("--image-size", type=int, help="Model input size (a multiple of 8; 32 and 64 tested; default 32, "
              "64 for lpc).")
@click.option("--channels", type=click.Choice(["1", "3"]), help="1 (grey) or 3 (RGB); default from the data.")
@click.option("--s-dim", type=int, help="Specified (identity) code size.")
@click.option("--z-dim", type=int, help="Unspecified code size.")
@click.option("--trunk", type=click.Choice(["conv5", "conv3"]), help="Encoder trunk: 3x 5x5 stride 2, or 6x 3x3.")
@click.option("--holdout-identities", type=float, help="Identity-disjoint split: fraction of identities held out "
              "(in [0, 1)), or their number (a whole number >= 1).")
@click.option("--test-fraction", type=float, help="Within-identity split: fraction of each identity's images held out.")
@click.option("--seed", type=int, help="Seed for weights, sampling and the split.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--time-budget", type=float, metavar="SECONDS",
              help="End training within this time: the step count (and the learning-rate schedule) is fitted "
                   "to the measured pace.")
@click.option("--set", "overrides", multiple=True, metavar="TABLE.FIELD=VALUE", help="Set any config field.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.version_option(__version__, prog_name="dvgan-train")
@verbosity
@friendly_errors
def main(data_spec, out_dir, config_file, resume, steps, batch_size, lr, optimizer, w_gan, image_size,
         channels, s_dim, z_dim, trunk, holdout_identities, test_fraction, seed, device, time_budget,
         overrides, no_progress):
    """Train the disentangling model (Mathieu et al., NIPS 2016) and write a self-describing run folder.

    RUN folder: checkpoint.pt, config.json, split.json, metrics.jsonl, samples/swap_*.png, curves.png.
    """
    from ..train.loop import train

    if resume:  # the run's checkpoint supplies every config; --steps may extend it
        settings = {"--data": data_spec, "--config": config_file, "--batch-size": batch_size, "--lr": lr,
                    "--optimizer": optimizer, "--lambda": w_gan, "--image-size": image_size, "--channels": channels,
                    "--s-dim": s_dim, "--z-dim": z_dim, "--trunk": trunk, "--holdout-identities": holdout_identities,
                    "--test-fraction": test_fraction, "--seed": seed, "--set": overrides or None}
        given = [name for name, value in settings.items() if value is not None]
        if given:
            raise UsageError(f"--resume continues the run with the settings in its checkpoint, so {', '.join(given)} "
                             "would be ignored: drop them (--steps, --time-budget and --device may be given)")
        model, train_cfg, data = ModelConfig(), TrainConfig(steps=steps or 0), {}
    else:
        options = {
            "model": {"image_size": image_size, "channels": int(channels) if channels else None,
                      "s_dim": s_dim, "z_dim": z_dim, "trunk": trunk},
            "train": {"steps": steps, "batch_size": batch_size, "lr": lr, "optimizer": optimizer,
                      "w_gan": w_gan, "seed": seed},
            "data": {"holdout_identities": holdout_identities, "test_fraction": test_fraction, "seed": seed},
        }
        model, train_cfg, data = build_configs(data_spec, config_file, overrides, options)
    summary = train(model, train_cfg, data, out_dir, device=device, resume=resume, progress=not no_progress,
                    time_budget=time_budget)
    resumed = f" ({summary['steps_run']} in this session)" if summary["steps_run"] != summary["steps"] else ""
    if summary["steps"] < summary["planned_steps"]:
        resumed += f" of the {summary['planned_steps']} asked: the time budget ran out"
    click.echo(f"trained to step {summary['steps']}{resumed} in {summary['seconds']:.0f} s "
               f"({summary['images_per_s']:.0f} triplets/s); checkpoint: {summary['checkpoint']}")


if __name__ == "__main__":
    main()

"""The `dvgan` command: one group, thin sub-commands that each call one library function."""
from __future__ import annotations

import click

from .. import __version__
from . import demo, engine, eval as eval_cli, export, train as train_cli


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dvgan")
def cli():
    """dvgan: disentangled image codes (identity s, everything else z), exported and served.

    \b
    Start with:  dvgan demo
    Then:        dvgan-train, dvgan-export, dvgan eval, dvgan index build, dvgan query, dvgan swap
    """


cli.add_command(demo.demo_cmd, name="demo")
cli.add_command(train_cli.main, name="train")
cli.add_command(export.main, name="export")
cli.add_command(export.info, name="info")
cli.add_command(eval_cli.main, name="eval")
engine.register(cli)  # index build, query, swap, sample, interpolate, serve


def main():
    cli()


if __name__ == "__main__":
    main()

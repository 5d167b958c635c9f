"""The command line as a user meets it: help, version, the committed recipes, and train -> export -> query
with no extra flags."""
import glob
import os
import tomllib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dvgan import __version__
from dvgan.cli.export import main as export_main
from dvgan.cli.main import cli
from dvgan.cli.train import main as train_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBCOMMANDS = ["demo", "train", "export", "info", "eval", "index", "query", "swap", "sample", "interpolate", "serve"]


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_command_has_help_with_examples(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output
    examples = res.output.split("Examples:")[1]
    assert f"dvgan {name}" in examples or (name == "train" and "dvgan-train" in examples) \
        or (name == "export" and "dvgan-export" in examples) or (name == "serve" and "curl" in examples)


@pytest.mark.parametrize("command", [cli, train_main, export_main])
def test_version(command):
    res = CliRunner().invoke(command, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_usage_error_exit_code_is_2():
    res = CliRunner().invoke(train_main, ["--data", "nope:x", "--out", "x"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == ["error: unknown data spec 'nope:x': use sprites, sprites:PER_ID, "
                                               "mnist:DIR, lpc:DIR or an existing folder"]


@pytest.mark.parametrize("recipe", sorted(glob.glob(os.path.join(ROOT, "configs", "*.toml"))),
                         ids=os.path.basename)
def test_every_committed_recipe_builds_valid_configs(recipe):
    """Every field a recipe sets exists and holds a valid value (recipes without a [data] spec take one
    on the command line)."""
    from dvgan.train.recipe import build_configs, read_config_file
    spec = None if read_config_file(recipe).get("data", {}).get("spec") else "sprites"
    model, train, data = build_configs(spec, recipe, [], {})
    assert model.validate() and train.validate() and data["spec"]


def test_a_recipe_is_found_by_name_outside_a_checkout(tmp_path, monkeypatch):
    """`--config faces` reads the recipe shipped in the package, from any folder; an unknown name is one line
    that lists the recipes, exit code 2; a file of that name in the working folder wins over the recipe."""
    from dvgan.train.recipe import build_configs, read_config_file
    monkeypatch.chdir(tmp_path)
    with open(os.path.join(ROOT, "configs", "faces.toml"), "rb") as f:
        assert read_config_file("faces") == tomllib.load(f) == read_config_file("faces.toml")
    assert build_configs("sprites", "faces", [], {})[0].z_trunk
    res = CliRunner().invoke(train_main, ["--config", "facez", "--data", "sprites:3", "--out", "r", "--steps", "1"])
    assert res.exit_code == 2 and "facez: no such config file or recipe" in res.output and "faces" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not os.path.exists("r")
    (tmp_path / "faces").write_text("[train]\nsteps = 7\n")
    assert read_config_file("faces") == {"train": {"steps": 7}}


def test_train_export_then_query_with_no_other_flag(tmp_path, monkeypatch):
    """After a train and an export, `dvgan query --by specified img.png` needs nothing else."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DVGAN_HOME", raising=False)
    runner = CliRunner()
    res = runner.invoke(train_main, ["--data", "sprites:3", "--out", "runs/tiny", "--steps", "3", "--batch-size", "8",
                                     "--s-dim", "8", "--z-dim", "8", "--set", "model.width=8",
                                     "--set", "model.adv_width=8", "--set", "train.sample_every=0", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "trained to step 3 in" in res.output
    res = runner.invoke(export_main, ["runs/tiny"])
    assert res.exit_code == 0, res.output
    assert os.path.isfile("dvgan-out/bundle/manifest.json")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save("img.png")
    res = runner.invoke(cli, ["query", "--by", "specified", "img.png", "-k", "3"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert "indexing the bundle's training data (sprites:3)" in lines[0]
    assert lines[1] == "img.png (by specified):" and len(lines) == 5
    assert os.path.isfile("dvgan-out/index/index.json")
    res = runner.invoke(cli, ["query", "--by", "unspecified", "img.png", "-k", "2"])  # reuses the saved index
    assert res.exit_code == 0 and "indexing" not in res.output and len(res.output.strip().splitlines()) == 3


def test_importing_the_commands_leaves_logging_alone_and_a_command_filters_library_chatter():
    """Importing the CLI changes no logger (faiss's included); a command's own handler leaves out the
    INFO messages of QUIET_LIBRARIES and keeps dvgan's, and the libraries' warnings."""
    import subprocess
    import sys
    code = (
        "import logging, sys\n"
        "import dvgan.cli.main\n"
        "from dvgan.cli.common import setup_logging\n"
        "names = ['faiss', 'faiss.loader', 'onnxscript', 'onnx_ir', 'torch.onnx']\n"
        "assert all(logging.getLogger(n).level == logging.NOTSET for n in names), "
        "[logging.getLogger(n).level for n in names]\n"
        "setup_logging(0, 0)\n"
        "logging.getLogger('faiss.loader').info('loaded the AVX2 build')\n"
        "logging.getLogger('onnxscript.passes').info('a graph pass')\n"
        "logging.getLogger('faiss.loader').warning('faiss warns')\n"
        "logging.getLogger('dvgan.engine').info('dvgan informs')\n"
        "assert all(logging.getLogger(n).level == logging.NOTSET for n in names)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == ["WARNING faiss.loader: faiss warns", "INFO dvgan.engine: dvgan informs"]

"""The package's layers: every import points down. From the bottom: core (the modules directly in
dvgan/: config, model, ops, prior, the shared formats and helpers), data, train, export, engine, eval,
demo, cli. A module may import its own layer and the layers below it, never one above."""
import ast
import os

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "dvgan")
LAYERS = ("core", "data", "train", "export", "engine", "eval", "demo", "cli")


def layer_of(module: str) -> str:
    """The layer of a dvgan module: its first name under dvgan (data, train, ..., demo, cli), else core."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "core"


def imports_of(source: str, module: str, is_package: bool) -> list:
    """The dvgan modules that source (the text of module) imports: absolute and relative imports, at
    any depth, inside functions too. ``from X import name`` counts as X.name (a submodule or not: the
    layer is the same)."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: one dot is the package itself, each further dot one level up
                parts = package.split(".")
                up = ".".join(parts[:len(parts) - (node.level - 1)])
                base = f"{up}.{base}" if base else up
            found += [f"{base}.{alias.name}" for alias in node.names]
    return [name for name in found if name == "dvgan" or name.startswith("dvgan.")]


def upward_imports(modules: dict) -> list:
    """'importer (layer) -> imported (layer)' for each import that points to a higher layer.
    modules: {module name: (source text, is a package __init__)}."""
    edges = []
    for module, (source, is_package) in sorted(modules.items()):
        here = LAYERS.index(layer_of(module))
        for target in imports_of(source, module, is_package):
            if LAYERS.index(layer_of(target)) > here:
                edges.append(f"{module} ({layer_of(module)}) -> {target} ({layer_of(target)})")
    return sorted(set(edges))


def package_modules() -> dict:
    """Every module of dvgan/, by name, with its source and whether it is a package's __init__."""
    modules = {}
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            parts = ["dvgan"] + os.path.relpath(path, ROOT)[:-3].split(os.sep)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            with open(path, encoding="utf-8") as f:
                modules[".".join(parts)] = (f.read(), is_package)
    return modules


def test_every_import_points_down():
    modules = package_modules()
    assert {"dvgan", "dvgan.model", "dvgan.ops", "dvgan.train.loop", "dvgan.eval.suite", "dvgan.cli.main"} <= set(modules)
    edges = upward_imports(modules)
    assert not edges, "imports that point up a layer:\n  " + "\n  ".join(edges)


def test_the_check_finds_upward_imports_of_every_form():
    """On a made-up package: absolute, relative, in a function, from a package __init__, and the
    imports that are allowed (down a layer, within one, of core)."""
    modules = {
        "dvgan.data.loader": ("from ..engine import Engine\nfrom ..config import ModelConfig\n", False),
        "dvgan.train.loop": ("def draw():\n    from dvgan.eval import figures\n    import dvgan.model\n", False),
        "dvgan.train": ("from . import loop\nfrom .. import demo\n", True),
        "dvgan.eval.suite": ("from ..train import loop\nfrom . import figures\nimport numpy\n", False),
        "dvgan.ops": ("from .model import reparameterize\nimport dvgan.cli.main\n", False),
        "dvgan.demo": ("from .eval import suite\nfrom . import defaults\n", False),
    }
    assert upward_imports(modules) == [
        "dvgan.data.loader (data) -> dvgan.engine.Engine (engine)",
        "dvgan.ops (core) -> dvgan.cli.main (cli)",
        "dvgan.train (train) -> dvgan.demo (demo)",
        "dvgan.train.loop (train) -> dvgan.eval.figures (eval)",
    ]
    assert [layer_of(m) for m in ("dvgan", "dvgan.ops", "dvgan.demo", "dvgan.cli.main", "dvgan.train.recipe")] == \
        ["core", "core", "demo", "cli", "train"]

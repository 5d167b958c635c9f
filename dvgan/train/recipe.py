"""Recipes: a TOML (or JSON) file with [model], [train] and [data] tables, merged with named options and
TABLE.FIELD=VALUE overrides into the configs that training takes."""
from __future__ import annotations

import json
import os
import tomllib

from ..config import ModelConfig, TrainConfig, from_dict
from ..data import default_channels, default_image_size
from ..errors import UsageError


RECIPES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")


def recipe_names() -> list[str]:
    """The recipes that ship with the package (dvgan/recipes/NAME.toml; configs/ in a source checkout)."""
    return sorted(name[:-5] for name in os.listdir(RECIPES) if name.endswith(".toml"))


def resolve_recipe(name_or_path: str) -> str:
    """The file a --config value names: an existing path, else a recipe shipped with the package by name
    (``faces`` or ``faces.toml``), so a recipe works without a source checkout."""
    if os.path.exists(name_or_path) or os.path.dirname(name_or_path):
        return name_or_path
    name, names = name_or_path.removesuffix(".toml"), recipe_names()
    if name in names:
        return os.path.join(RECIPES, name + ".toml")
    raise UsageError(f"{name_or_path}: no such config file or recipe (recipes: {', '.join(names)})")


def read_config_file(path: str) -> dict:
    """A TOML (or JSON) recipe with optional [model], [train] and [data] tables: a file, or a recipe shipped
    with the package by name (resolve_recipe)."""
    path = resolve_recipe(path)
    try:
        with open(path, "rb") as f:
            raw = json.load(f) if path.endswith(".json") else tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"{path}: no such config file") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a valid config file ({exc})") from None
    unknown = sorted(set(raw) - {"model", "train", "data"})
    if unknown:
        raise UsageError(f"{path}: unknown table(s) {', '.join(unknown)} (use model, train, data)")
    return raw


def parse_overrides(pairs) -> dict:
    """--set model.z_dim=16 train.w_gan=0 -> {"model": {"z_dim": 16}, "train": {"w_gan": 0}}."""
    out: dict = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        table, dot, name = key.partition(".")
        if not eq or not dot or table not in ("model", "train", "data"):
            raise UsageError(f"--set {pair!r}: expected TABLE.FIELD=VALUE with TABLE model, train or data")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(table, {})[name] = parsed
    return out


def build_configs(data_spec, config_file, overrides, options) -> tuple:
    """Merge recipe file, then named options, then --set pairs, into (ModelConfig, TrainConfig, data dict)."""
    raw = read_config_file(config_file) if config_file else {}
    tables = {t: dict(raw.get(t, {})) for t in ("model", "train", "data")}
    for table, values in options.items():
        tables[table].update({k: v for k, v in values.items() if v is not None})
    for table, values in parse_overrides(overrides).items():
        tables[table].update(values)
    if data_spec:
        tables["data"]["spec"] = data_spec
    if not tables["data"].get("spec"):
        raise UsageError("no data: give --data SPEC (sprites, mnist:DIR, lpc:DIR or a folder) or a config with [data] spec")
    if "channels" not in tables["model"]:
        tables["model"]["channels"] = default_channels(tables["data"]["spec"])
    if "image_size" not in tables["model"] and default_image_size(tables["data"]["spec"]):
        tables["model"]["image_size"] = default_image_size(tables["data"]["spec"])
    try:
        model = from_dict(ModelConfig, tables["model"]).validate()
        train = from_dict(TrainConfig, tables["train"]).validate()
    except TypeError as exc:
        raise UsageError(f"bad config value: {exc}") from None
    known = {"spec", "seed", "holdout_identities", "test_fraction"}
    bad = sorted(set(tables["data"]) - known)
    if bad:
        raise UsageError(f"unknown data field(s): {', '.join(bad)}")
    return model, train, tables["data"]

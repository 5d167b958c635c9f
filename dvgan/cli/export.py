"""dvgan-export (export a run to a bundle) and dvgan info (show and check a bundle)."""
from __future__ import annotations

import json

import click

from .. import __version__
from .common import friendly_errors, verbosity

EXPORT_EXAMPLES = """
\b
Examples:
  dvgan-export runs/sprites                      # -> ./dvgan-out/bundle (encoder.onnx, decoder.onnx, ...)
  dvgan-export runs/sprites --fp16 -o bundles/sprites
  dvgan-export runs/sprites --trt fp16           # needs the [trt] extra and a GPU
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXPORT_EXAMPLES)
@click.argument("source", metavar="RUN_DIR|CHECKPOINT", type=click.Path())
@click.option("-o", "--out", "out_dir", type=click.Path(), default=None,
              help="Bundle folder to write (default: $DVGAN_HOME/bundle, i.e. ./dvgan-out/bundle, where "
                   "the engine's commands look). An earlier bundle there is replaced.")
@click.option("--fp16", is_flag=True, help="Also write fp16 graphs (float32 IO), verified against fp32.")
@click.option("--trt", type=click.Choice(["fp16", "fp32"]), default=None,
              help="Also build TensorRT plans from the fp16 or fp32 graphs (needs tensorrt and a GPU).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset (18 or newer).")
@click.option("--max-batch", type=int, default=256, show_default=True,
              help="Largest batch recorded in the manifest and the TensorRT profile (1..max-batch).")
@click.option("--no-verify", is_flag=True, help="Skip the numeric checks (the ONNX checker still runs).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), default=None,
              help="TensorRT timing cache file (default: per TensorRT version and GPU, in ~/.cache/dvgan).")
@click.version_option(__version__, prog_name="dvgan-export")
@verbosity
@friendly_errors
def main(source, out_dir, fp16, trt, opset, max_batch, no_verify, timing_cache):
    """Export a trained run to ONNX (and optionally fp16 ONNX and TensorRT) as a verified bundle."""
    from ..export import export_bundle
    path = export_bundle(source, out_dir, fp16=fp16, trt=trt, opset=opset, max_batch=max_batch,
                         verify=not no_verify, timing_cache=timing_cache)
    click.echo(path)


def _summary(bundle: str, manifest: dict) -> list[str]:
    cfg = manifest["model_config"]
    pre = manifest["preprocess"]
    width = f"width {cfg.get('width')}" + (f", decoder width {cfg['dec_width']}" if cfg.get("dec_width") else "")
    lines = [
        f"bundle       {bundle}",
        f"format       {manifest['format']} v{manifest['format_version']}, opset {manifest.get('opset')}, "
        f"max batch {manifest.get('max_batch')}",
        f"model        {cfg.get('trunk')} trunk, {width}, s_dim {manifest['s_dim']}, z_dim {manifest['z_dim']}",
        f"images       {manifest['image_size']}x{manifest['image_size']} {pre['mode']}, {pre['resize']} resize, "
        f"values in [{pre['value_range'][0]}, {pre['value_range'][1]}]",
    ]
    source = manifest.get("source") or {}
    lines.append(f"source       step {source.get('step')}, data {(source.get('data') or {}).get('spec')}, "
                 f"checkpoint sha256 {str(source.get('checkpoint_sha256'))[:16]}")
    lines.append("versions     " + ", ".join(f"{k} {v}" for k, v in (manifest.get("versions") or {}).items()))
    for role, io in manifest["io"].items():
        ins = ", ".join(f"{k} {v}" for k, v in io["inputs"].items())
        outs = ", ".join(f"{k} {v}" for k, v in io["outputs"].items())
        lines.append(f"{role:<12} {ins} -> {outs}")
    prior = manifest.get("z_prior")
    lines.append(f"sampling     z ~ Gaussian fitted to mu of {prior.get('n_images')} training images "
                 f"({prior.get('file')})" if prior else "sampling     z ~ N(0, I) (the bundle carries no fitted prior)")
    lines.append("files (sha256 verified):")
    for name, e in manifest["files"].items():
        lines.append(f"  {name:<22} {e.get('bytes', 0):>10} B  {e.get('kind')}/{e.get('precision') or '-'}  "
                     f"{e['sha256'][:16]}")
    ver = manifest.get("verification") or {}
    if "fp32" in ver:
        worst = max(v for g in ("encoder", "decoder") for v in ver["fp32"][g].values())
        tol = ver["fp32"]["tolerance"]
        lines.append(f"verified     fp32 vs PyTorch: max abs error {worst:.3g} (tolerance {tol:g})")
    if "fp16" in ver:
        img = ver["fp16"]["decoder"]["image"]["max_abs"]
        cos = min(v["min_cosine"] for v in ver["fp16"]["encoder"].values())
        lines.append(f"verified     fp16 vs fp32: image max abs error {img:.3g}, code cosine >= {cos:.6f}")
    if not ver:
        lines.append("verified     no numeric verification was run at export")
    return lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               epilog="\b\nExamples:\n  dvgan info dvgan-out/bundle\n  dvgan info dvgan-out/bundle --json")
@click.argument("bundle", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print manifest.json as it is.")
@verbosity
@friendly_errors
def info(bundle, as_json):
    """Show a bundle's manifest and verify every file's checksum (exit 1 if any differs)."""
    from ..export.manifest import load_manifest
    manifest = load_manifest(bundle, verify=True)
    if as_json:
        click.echo(json.dumps(manifest, indent=2))
    else:
        click.echo("\n".join(_summary(bundle, manifest)))

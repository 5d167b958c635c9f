"""Export a trained model to a self-describing bundle: ONNX graphs, optional fp16 graphs and TensorRT plans.

export_bundle writes the bundle; load_manifest reads and checks one; bundle_digest identifies one.
Reading a bundle needs neither torch nor onnx, so export_bundle (which does) is imported on first use.
"""
from .manifest import bundle_digest, load_manifest

__all__ = ["export_bundle", "load_manifest", "bundle_digest"]


def __getattr__(name):
    if name == "export_bundle":
        from .bundle import export_bundle
        return export_bundle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

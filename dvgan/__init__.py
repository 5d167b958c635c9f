"""dvgan: disentangling factors of variation with adversarial training (Mathieu et al., NIPS 2016).

Public API, each imported on first use so that `import dvgan` stays light (no torch, no onnxruntime):
  Engine          load an exported bundle; encode, decode, swap, sample, interpolate
  CodeIndex       retrieval by s or by z over a gallery
  train           train a run folder (ModelConfig, TrainConfig)
  load_checkpoint read a checkpoint safely (weights_only)
  export_bundle   export a run to ONNX / fp16 / TensorRT
  evaluate        the paper's probes, retrieval, analogies and figures for a run
"""
__version__ = "0.2.0"

_LAZY = {
    "Engine": ("dvgan.engine", "Engine"),
    "CodeIndex": ("dvgan.engine.index", "CodeIndex"),
    "train": ("dvgan.train.loop", "train"),
    "load_checkpoint": ("dvgan.train.checkpoint", "load_checkpoint"),
    "export_bundle": ("dvgan.export", "export_bundle"),
    "evaluate": ("dvgan.eval", "evaluate"),
    "ModelConfig": ("dvgan.config", "ModelConfig"),
    "TrainConfig": ("dvgan.config", "TrainConfig"),
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'dvgan' has no attribute {name!r}")

"""dvgan: disentangling factors of variation with adversarial training (Mathieu et al., NIPS 2016)."""
__version__ = "0.1.0"


def __getattr__(name):
    # Engine is imported on first use, so `import dvgan` stays light (no torch, no onnxruntime).
    if name == "Engine":
        from .engine import Engine
        return Engine
    raise AttributeError(f"module 'dvgan' has no attribute {name!r}")

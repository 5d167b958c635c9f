"""Inference engine: load an exported bundle, swap / sample / interpolate in batches, retrieve by s or z."""
from .engine import Codes, Engine, to_uint8

__all__ = ["Engine", "Codes", "to_uint8"]

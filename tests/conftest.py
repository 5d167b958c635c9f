import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


class Evil:
    """A pickle payload: unpickling it creates the marker file. weights_only loading must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def tiny_model_config(**kw):
    from dvgan.config import ModelConfig
    base = dict(image_size=32, channels=3, s_dim=8, z_dim=8, width=8, adv_width=8)
    base.update(kw)
    return ModelConfig(**base)


def tiny_train_config(**kw):
    from dvgan.config import TrainConfig
    base = dict(steps=4, batch_size=8, sample_every=0, log_every=2, ckpt_every=2)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A run folder trained for a few steps on sprites (3 images per identity)."""
    from dvgan.train.loop import train
    out = str(tmp_path_factory.mktemp("run") / "run")
    train(tiny_model_config(), tiny_train_config(), {"spec": "sprites:3"}, out, device="cpu", progress=False)
    return out

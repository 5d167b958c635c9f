"""Run under torchrun: trains 3 steps with DDP and writes each rank's final weights."""
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(__file__))
from conftest import tiny_model_config, tiny_train_config  # noqa: E402
from dvgan.train.loop import Trainer, _maybe_init_distributed  # noqa: E402

out = sys.argv[1]
device = _maybe_init_distributed("cpu")
trainer = Trainer(tiny_model_config(), tiny_train_config(steps=3, w_sid=1.0), {"spec": "sprites:3"},
                  os.path.join(out, "run"), device=device)
modules = {"encoder": trainer.autoencoder.encoder, "decoder": trainer.autoencoder.decoder,
           "adversary": trainer.adversary, "latent": trainer.latent, "id_head": trainer.id_head}


def params(m):
    return {k: v.detach().clone() for k, v in m.named_parameters()}


initial = {p: params(m) for p, m in modules.items()}
for _ in range(3):
    trainer.train_step()
trainer.save()
torch.save({"step": trainer.step, "memory": trainer.memory.state_dict(),
            **{p: params(m) for p, m in modules.items()},
            **{"initial_" + k: v for k, v in initial.items()}},
           os.path.join(out, f"rank{dist.get_rank()}.pt"))
dist.destroy_process_group()

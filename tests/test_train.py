import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import as_format_1, tiny_model_config, tiny_train_config
from dvgan import __version__
from dvgan.errors import UsageError
from dvgan.train.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint
from dvgan.train.loop import Trainer, TrainingError, train
from dvgan.train.step import adversary_step, generator_step


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _moved(before, module):
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())}


@pytest.fixture()
def trainer(tmp_path):
    return Trainer(tiny_model_config(), tiny_train_config(), {"spec": "sprites:3"}, str(tmp_path), device="cpu")


def test_generator_step_moves_encoder_and_decoder_only(trainer):
    ae, adv = trainer.autoencoder, trainer.adversary
    ae_before, adv_before = _snapshot(ae), _snapshot(adv)
    terms, fake, _ = generator_step(ae, adv, trainer.opt_gen, trainer.train_cfg, trainer.batch(), 8)
    assert _moved(ae_before, ae) == set(ae_before)  # every encoder and decoder weight moved
    assert _moved(adv_before, adv) == set()         # the adversary is frozen
    assert {"recon", "swap_recon", "kl", "gan_swap", "gan_prior", "loss"} <= set(terms)
    assert all(p.requires_grad for p in adv.parameters())  # unfrozen again afterwards
    assert not fake.requires_grad


def test_adversary_step_moves_adversary_only(trainer):
    ae, adv = trainer.autoencoder, trainer.adversary
    batch = trainer.batch()
    _, fake, _ = generator_step(ae, adv, trainer.opt_gen, trainer.train_cfg, batch, 8)
    ae_before, adv_before = _snapshot(ae), _snapshot(adv)
    out = adversary_step(adv, trainer.opt_adv, trainer.train_cfg, fake, batch)
    assert _moved(ae_before, ae) == set()
    assert _moved(adv_before, adv) == set(adv_before)
    assert 0.0 <= float(out["adv_acc"]) <= 1.0


def test_adversarial_terms_are_switchable(tmp_path):
    t = Trainer(tiny_model_config(), tiny_train_config(gan_prior=False), {"spec": "sprites:3"}, str(tmp_path), device="cpu")
    terms = t.train_step()
    assert "gan_swap" in terms and "gan_prior" not in terms


def test_image_adversary_joins_at_gan_from_share_of_the_steps(tmp_path):
    """train.gan_from: the first steps run as lambda = 0 (no adversarial terms, the adversary untouched,
    the latent critic still learning); from gan_from x steps on, the adversary judges and learns."""
    t = Trainer(tiny_model_config(), tiny_train_config(steps=4, gan_from=0.5), {"spec": "sprites:3"}, str(tmp_path),
                device="cpu")
    adv_before = _snapshot(t.adversary)
    for _ in range(2):
        terms = t.train_step()
        assert "gan_swap" not in terms and "adv" not in terms and "zadv" in terms
    assert _moved(adv_before, t.adversary) == set()
    terms = t.train_step()
    assert {"gan_swap", "gan_prior", "adv"} <= set(terms)
    assert _moved(adv_before, t.adversary) == set(adv_before)
    assert t.train_cfg.w_gan > 0  # the run's own config is left as it was
    with pytest.raises(UsageError, match="gan_from"):
        tiny_train_config(gan_from=1.0).validate()


@pytest.mark.parametrize("whiten", [False, True])
def test_s_invariance_term_moves_only_the_encoder(tmp_path, whiten):
    """The within-identity spread of s (plain or whitened) is a term of the generator loss; it reaches the
    encoder alone."""
    t = Trainer(tiny_model_config(), tiny_train_config(w_sinv=1.0, sinv_whiten=whiten, w_gan=0.0, w_recon=0.0,
                                                       w_swap_recon=0.0, w_kl=0.0, w_zadv=0.0), {"spec": "sprites:3"},
                str(tmp_path), device="cpu")
    enc_before, dec_before = _snapshot(t.autoencoder.encoder), _snapshot(t.autoencoder.decoder)
    terms = t.train_step()
    assert 0.0 < terms["sinv"] == terms["loss"]
    assert _moved(enc_before, t.autoencoder.encoder) and not _moved(dec_before, t.autoencoder.decoder)


def test_identity_read_out_of_s_trains_the_encoder_and_its_head_only(tmp_path):
    """train.w_sid: the cross-entropy of the cosine identity head on s (for x1, x1' and x2) is a term of
    the generator loss; it moves the encoder and the head, never the decoder, and the head learns to name
    identities it is shown."""
    t = Trainer(tiny_model_config(), tiny_train_config(w_sid=1.0, w_gan=0.0, w_recon=0.0, w_swap_recon=0.0, w_kl=0.0,
                                                       w_sinv=0.0, w_zadv=0.0, lr=1e-2), {"spec": "sprites:3"},
                str(tmp_path), device="cpu")
    enc_before, dec_before, head_before = (_snapshot(m) for m in (t.autoencoder.encoder, t.autoencoder.decoder, t.id_head))
    fixed = t.batch()
    t.batch = lambda: fixed  # one batch over and over: the head and s learn to name its identities
    first = t.train_step()
    assert first["sid"] == first["loss"] > 0
    assert _moved(enc_before, t.autoencoder.encoder) and _moved(head_before, t.id_head) == {"weight"}
    assert not _moved(dec_before, t.autoencoder.decoder)
    for _ in range(30):
        last = t.train_step()
    assert last["sid"] < 0.1 * first["sid"]
    off = Trainer(tiny_model_config(), tiny_train_config(), {"spec": "sprites:3"}, str(tmp_path / "off"), device="cpu")
    assert off.id_head is None and "sid" not in off.train_step()


def test_margin_of_the_identity_read_out_is_cosface(tmp_path, monkeypatch):
    """train.sid_margin: the read-out's loss is the cross-entropy of its logits with scale * margin taken
    from the true identity's logit, so it is larger than without the margin on the same codes."""
    t = Trainer(tiny_model_config(), tiny_train_config(w_sid=1.0, sid_margin=0.3), {"spec": "sprites:3"},
                str(tmp_path), device="cpu")
    seen = {}
    head = t.id_head.forward

    def spy(s, target=None, margin=0.0):
        seen["plain"] = head(s).detach()  # the same codes without the margin
        return head(s, target, margin)
    monkeypatch.setattr(t.id_head, "forward", spy)
    batch = t.batch()
    t.batch = lambda: batch
    terms = t.train_step()
    logits, target = seen["plain"], torch.cat([batch.id1, batch.id1, batch.id2])
    margin = F.one_hot(target, logits.shape[1]) * t.id_head.scale * 0.3
    assert terms["sid"] == pytest.approx(F.cross_entropy(logits - margin, target).item(), rel=1e-5)
    assert terms["sid"] > F.cross_entropy(logits, target).item()
    with pytest.raises(UsageError, match="sid_margin"):
        tiny_train_config(sid_margin=1.0).validate()


@pytest.mark.parametrize("trunk_grad", [0.0, 1.0])
def test_latent_critic_reaches_the_trunk_as_configured(tmp_path, trunk_grad):
    """zadv_trunk_grad = 0 leaves the latent critic's term to the z head; 1 lets it reach the trunk too."""
    cfg = tiny_train_config(w_zadv=1.0, zadv_trunk_grad=trunk_grad, w_gan=0.0, w_recon=0.0, w_swap_recon=0.0,
                            w_kl=0.0, w_sinv=0.0)
    t = Trainer(tiny_model_config(), cfg, {"spec": "sprites:3"}, str(tmp_path), device="cpu")
    enc = t.autoencoder.encoder
    before = _snapshot(enc)
    terms = t.train_step()
    assert terms["zadv_gen"] > 0
    moved = _moved(before, enc)
    assert {"to_z.weight", "to_z.bias"} <= moved and not {"to_s.weight", "to_s.bias"} & moved
    assert any(k.startswith("trunk.") for k in moved) == (trunk_grad > 0)


def test_latent_critic_trains_on_its_memory(tmp_path):
    """With zadv_steps > 1 the extra critic updates draw from the memory of past codes."""
    t = Trainer(tiny_model_config(), tiny_train_config(w_zadv=0.1, zadv_steps=3, zadv_memory=100), {"spec": "sprites:3"},
                str(tmp_path), device="cpu")
    assert tuple(t.memory.codes.shape) == (100, t.model_cfg.z_dim)
    recalled = []
    real_recall = t.memory.recall
    t.memory.recall = lambda n: recalled.append(n) or real_recall(n)
    t.train_step()
    t.train_step()
    assert int(t.memory.seen) == 2 * t.train_cfg.batch_size
    assert recalled == [4 * t.train_cfg.batch_size] * 4  # two extra updates per step


def test_lambda_zero_is_the_ablation(tmp_path):
    """With lambda = 0 no adversarial term is computed and the image adversary never moves; the latent
    critic of the default recipe still trains."""
    t = Trainer(tiny_model_config(), tiny_train_config(w_gan=0.0), {"spec": "sprites:3"}, str(tmp_path), device="cpu")
    before, latent_before = _snapshot(t.adversary), _snapshot(t.latent)
    decoded = []
    t.autoencoder.decoder.register_forward_hook(lambda m, args, out: decoded.append(out.shape[0]))
    for _ in range(2):
        terms = t.train_step()
    assert "gan_swap" not in terms and "adv" not in terms and "zadv" in terms
    assert decoded == [2 * t.train_cfg.batch_size] * 2  # Dec(z1, s1) and Dec(z1, s1') only: no swaps to judge
    assert _moved(before, t.adversary) == set()
    assert _moved(latent_before, t.latent) == set(latent_before)


def test_latent_critic_moves_with_the_adversary_only(tmp_path):
    """The critic on z is frozen in the generator step and moves only in the adversary step."""
    t = Trainer(tiny_model_config(), tiny_train_config(w_zadv=1.0), {"spec": "sprites:3"},
                str(tmp_path), device="cpu")
    ae, critic = t.autoencoder, t.latent
    batch = t.batch()
    critic_before = _snapshot(critic)
    terms, fake, codes = generator_step(ae, t.adversary, t.opt_gen, t.train_cfg, batch, 8, latent=critic)
    assert "zadv_gen" in terms and _moved(critic_before, critic) == set()
    assert set(codes) == {"mu1", "mu1p", "mu2", "s1", "s1p"} and not codes["mu2"].requires_grad
    ae_before = _snapshot(ae)
    out = adversary_step(t.adversary, t.opt_adv, t.train_cfg, fake, batch, latent=critic, codes=codes)
    assert _moved(critic_before, critic) == set(critic_before) and _moved(ae_before, ae) == set()
    assert 0.0 <= float(out["zadv_acc"]) <= 1.0
    t.train_step()  # and through the trainer: its state is checkpointed
    assert t.state_dict()["latent_adversary"]


def test_mismatched_real_images_are_fakes_for_the_adversary(tmp_path, monkeypatch):
    t = Trainer(tiny_model_config(), tiny_train_config(adv_mismatch=True), {"spec": "sprites:3"}, str(tmp_path), device="cpu")
    seen = []
    real_forward = t.adversary.forward
    monkeypatch.setattr(t.adversary, "forward", lambda x, ids: seen.append((x.detach(), ids)) or real_forward(x, ids))
    batch = t.batch()
    _, fake, _ = generator_step(t.autoencoder, t.adversary, t.opt_gen, t.train_cfg, batch, 8)
    seen.clear()
    out = adversary_step(t.adversary, t.opt_adv, t.train_cfg, fake, batch)
    (x, ids), = seen
    b, nf = batch.x1.shape[0], fake.shape[0]  # fakes first, then x2 as the real, then x1
    assert torch.equal(x[nf + b:], batch.x1) and torch.equal(ids[nf + b:], batch.id2)  # x1 shown as id2
    assert "adv_mismatch_acc" in out


def test_prior_samples_are_fakes_for_the_adversary_when_asked(tmp_path, monkeypatch):
    """adv_prior_fake: the adversary's fakes are Dec(z1, s2) then Dec(z ~ N(0, I), s2), both under id2,
    each with a fake target; x2 follows as the real."""
    t = Trainer(tiny_model_config(), tiny_train_config(adv_prior_fake=True), {"spec": "sprites:3"}, str(tmp_path),
                device="cpu")
    seen = []
    real_forward = t.adversary.forward

    def recording_forward(x, ids):
        logits = real_forward(x, ids)
        seen.append((x.detach(), ids, logits.detach()))
        return logits
    monkeypatch.setattr(t.adversary, "forward", recording_forward)
    batch = t.batch()
    _, fake, _ = generator_step(t.autoencoder, t.adversary, t.opt_gen, t.train_cfg, batch, 8)
    (generated, _, _), = seen  # the generator step judges [Dec(z1, s2); Dec(z_prior, s2)]
    b = batch.x1.shape[0]
    assert fake.shape[0] == 2 * b and torch.equal(fake, generated)
    seen.clear()
    out = adversary_step(t.adversary, t.opt_adv, t.train_cfg, fake, batch)
    (x, ids, logits), = seen
    assert torch.equal(x[:2 * b], fake) and torch.equal(x[2 * b:], batch.x2)
    assert torch.equal(ids, batch.id2.repeat(3))
    # accuracy over all 3b judgements: both kinds of fake below 0, the real above
    expected = torch.cat([logits[:2 * b] < 0, logits[2 * b:] > 0]).float().mean()
    assert float(out["adv_acc"]) == pytest.approx(float(expected))


def test_update_ratio(tmp_path):
    t = Trainer(tiny_model_config(), tiny_train_config(adv_every=2), {"spec": "sprites:3"}, str(tmp_path), device="cpu")
    assert "adv" in t.train_step()       # step 0
    assert "adv" not in t.train_step()   # step 1
    assert "adv" in t.train_step()       # step 2


def test_checkpoint_is_self_describing(tiny_run):
    state = torch.load(os.path.join(tiny_run, "checkpoint.pt"), weights_only=True)
    assert state["step"] == 4
    for key in ("model_config", "train_config", "data", "encoder", "decoder", "adversary", "opt_gen",
                "opt_adv", "rng", "dvgan_version", "torch_version"):
        assert key in state, key
    assert state["model_config"]["num_ids"] == len(json.load(open(os.path.join(tiny_run, "split.json")))["train_identities"])
    lines = [json.loads(x) for x in open(os.path.join(tiny_run, "metrics.jsonl"))]
    assert [x["step"] for x in lines] == [2, 4]
    assert os.path.exists(os.path.join(tiny_run, "curves.png"))
    assert os.path.exists(os.path.join(tiny_run, "samples", "swap_000004.png"))


def test_split_is_identity_disjoint_for_sprites(tiny_run):
    split = json.load(open(os.path.join(tiny_run, "split.json")))
    assert split["kind"] == "identity"
    assert not set(split["train_identities"]) & set(split["test_identities"])
    assert len(split["test_identities"]) == round(256 * 0.2)


def _same_weights(a, b):
    assert a["step"] == b["step"]
    for part_name in ("encoder", "decoder", "adversary", "latent_adversary", "latent_memory", "identity_head"):
        assert a[part_name].keys() == b[part_name].keys()
        for k in a[part_name]:
            assert torch.equal(a[part_name][k], b[part_name][k]), (part_name, k)


@pytest.mark.parametrize("shift,light,sid", [(0, 0.0, 0.0), (2, 0.0, 0.0), (0, 1.0, 0.0), (0, 0.0, 1.0)])
def test_killed_run_resumes_to_the_same_state(tmp_path, monkeypatch, shift, light, sid):
    """A run killed after step 5 and resumed ends where an uninterrupted one does (the default recipe:
    cosine learning-rate decay and the latent critic's memory are part of the state; with shift, the
    offsets and lights come from the checkpointed sampler's generator; with sid, the identity head and its
    optimizer state are part of it too)."""
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    cfg = lambda: tiny_train_config(steps=6, shift=shift, light=light, w_sid=sid)  # noqa: E731
    train(tiny_model_config(), cfg(), {"spec": "sprites:3"}, full, device="cpu", progress=False)
    real_step = Trainer.train_step

    def killed(self):
        if self.step == 5:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(Trainer, "train_step", killed)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_model_config(), cfg(), {"spec": "sprites:3"}, part, device="cpu", progress=False)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    assert load_checkpoint(part)["step"] == 4  # the last checkpoint (every 2 steps)
    train(tiny_model_config(), cfg(), {}, part, device="cpu", resume=True, progress=False)
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert a["step"] == 6 and int(a["latent_memory"]["seen"]) == 6 * 8
    _same_weights(a, b)
    assert bool(a["identity_head"]) == (sid > 0)
    steps = [json.loads(x)["step"] for x in open(os.path.join(part, "metrics.jsonl"))]
    assert steps == [2, 4, 6]


def test_resume_with_more_steps_extends_a_constant_rate_run(tmp_path):
    """--steps with --resume sets a new total; with a constant learning rate the extended run equals
    one trained to that total (a decaying rate depends on the total, so there it differs by design)."""
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    cfg = dict(lr_decay="none")
    train(tiny_model_config(), tiny_train_config(steps=6, **cfg), {"spec": "sprites:3"}, full, device="cpu", progress=False)
    train(tiny_model_config(), tiny_train_config(steps=4, **cfg), {"spec": "sprites:3"}, part, device="cpu", progress=False)
    train(tiny_model_config(), tiny_train_config(steps=6), {}, part, device="cpu", resume=True, progress=False)
    _same_weights(load_checkpoint(full), load_checkpoint(part))


def test_a_checkpoint_with_a_retired_setting_resumes_only_at_todays_value(tmp_path):
    """A run saved while train.zadv_kind existed holds it (at "ids", how today's code trains): it resumes
    to the weights of an uninterrupted run. One trained with "pairs" is refused, naming the setting. The
    same for the pair critic, the latent cycles, the share on the decoder's reading and the grey copies:
    a run saved with them off (and the pair critic's empty state) resumes; one with a cycle on is refused."""
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    cfg = dict(lr_decay="none")
    train(tiny_model_config(), tiny_train_config(steps=6, **cfg), {"spec": "sprites:3"}, full, device="cpu", progress=False)
    train(tiny_model_config(), tiny_train_config(steps=4, **cfg), {"spec": "sprites:3"}, part, device="cpu", progress=False)
    path = os.path.join(part, "checkpoint.pt")
    saved = torch.load(path, weights_only=True)
    torch.save({**saved, "train_config": {**saved["train_config"], "zadv_kind": "pairs"}}, path)
    with pytest.raises(CheckpointError, match="train.zadv_kind = 'pairs'"):
        train(tiny_model_config(), tiny_train_config(steps=6), {}, part, device="cpu", resume=True, progress=False)
    off = {"zadv_kind": "ids", "w_spair": 0.0, "spair_steps": 3, "w_zcycle": 0.0, "w_scycle": 0.0,
           "zbetween_read": False, "sid_grey": False, "sid_grey_head": True}
    torch.save({**saved, "train_config": {**saved["train_config"], **off, "w_scycle": 1.0}}, path)
    with pytest.raises(CheckpointError, match="train.w_scycle = 1.0"):
        train(tiny_model_config(), tiny_train_config(steps=6), {}, part, device="cpu", resume=True, progress=False)
    torch.save({**saved, "train_config": {**saved["train_config"], **off}, "pair_critic": {}, "pair_memory": {}}, path)
    train(tiny_model_config(), tiny_train_config(steps=6), {}, part, device="cpu", resume=True, progress=False)
    _same_weights(load_checkpoint(full), load_checkpoint(part))


def test_a_format_1_checkpoint_with_the_prior_resumes_as_it_was_trained(tmp_path):
    """A dvgan 0.1.0 checkpoint (format 1) that carries the prior, with CoordConv and the pair critic off,
    reads as format 2; its run resumes to the weights of an uninterrupted one and is written anew as format 2."""
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    cfg = dict(lr_decay="none")
    train(tiny_model_config(), tiny_train_config(steps=6, **cfg), {"spec": "sprites:3"}, full, device="cpu", progress=False)
    train(tiny_model_config(), tiny_train_config(steps=4, **cfg), {"spec": "sprites:3"}, part, device="cpu", progress=False)
    path = os.path.join(part, "checkpoint.pt")
    torch.save(as_format_1(torch.load(path, weights_only=True)), path)
    state = load_checkpoint(part)
    assert state["format_version"] == FORMAT_VERSION == 2 and "pair_critic" not in state
    assert "coords" not in state["model_config"] and "w_zpair" not in state["train_config"]
    train(tiny_model_config(), tiny_train_config(steps=6), {}, part, device="cpu", resume=True, progress=False)
    _same_weights(load_checkpoint(full), load_checkpoint(part))
    assert torch.load(path, weights_only=True)["format_version"] == 2


@pytest.mark.parametrize("edit,why", [
    (lambda s: s.pop("z_prior"), "no fitted z prior"),
    (lambda s: s["model_config"].update(coords=True), "model.coords on"),
    (lambda s: s["train_config"].update(w_zpair=0.05), "train.w_zpair on"),
])
def test_other_format_1_checkpoints_are_refused_with_what_to_do(tiny_run, tmp_path, edit, why):
    """Without the prior, or with an option this version no longer has, a format-1 checkpoint is refused in
    one line that names the version to retrain with and the one that reads it."""
    state = as_format_1(torch.load(os.path.join(tiny_run, "checkpoint.pt"), weights_only=True))
    edit(state)
    path = str(tmp_path / "checkpoint.pt")
    torch.save(state, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert str(info.value) == (f"{path}: written by an older dvgan (checkpoint format 1, {why}); retrain it with "
                               f"dvgan {__version__}, or read it with dvgan 0.1.0")
    assert __version__ != "0.1.0"


def test_a_format_2_checkpoint_needs_the_prior(tiny_run, tmp_path):
    state = torch.load(os.path.join(tiny_run, "checkpoint.pt"), weights_only=True)
    del state["z_prior"]
    path = str(tmp_path / "checkpoint.pt")
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="lacks 'z_prior'"):
        load_checkpoint(path)
    assert "z_prior" not in load_checkpoint(path, bundle_weights=True)  # a bundle's model.pt keeps no prior


def test_existing_run_is_not_overwritten(tiny_run):
    from dvgan.errors import UsageError
    with pytest.raises(UsageError, match="--resume"):
        train(tiny_model_config(), tiny_train_config(), {"spec": "sprites:3"}, tiny_run, device="cpu", progress=False)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    out = str(tmp_path / "nan")
    real_batch = Trainer.batch

    def poisoned(self):
        batch = real_batch(self)
        if self.step >= 3:
            batch.x1 = batch.x1 * float("nan")
        return batch

    monkeypatch.setattr(Trainer, "batch", poisoned)
    with pytest.raises(TrainingError, match="non-finite at step 4"):
        train(tiny_model_config(), tiny_train_config(steps=6), {"spec": "sprites:3"}, out, device="cpu", progress=False)
    state = load_checkpoint(out)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["encoder"].values() if v.is_floating_point())


def test_ddp_replicas_stay_identical(tmp_path):
    """Two CPU processes under torchrun (gloo) train a few steps, the identity read-out of s on; both end
    with the same weights."""
    worker = os.path.join(os.path.dirname(__file__), "ddp_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", worker, str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0["step"] == r1["step"] == 3
    # Parameters must agree exactly. BatchNorm running statistics are broadcast from rank 0 at the
    # start of each forward, so after the last step each rank holds its own batch's update; the
    # checkpoint is written by rank 0.
    for part in ("encoder", "decoder", "adversary", "latent", "id_head"):
        assert set(r0[part]) == set(r1[part]) and r0[part]
        for k, v in r0[part].items():
            assert torch.equal(v, r1[part][k]), (part, k)
            assert not torch.equal(v, r0["initial_" + part][k]), (part, k)
    # The latent critic's code memory is each rank's own: its extra updates recall local codes, and
    # DDP averages their gradients, which is what keeps the critic identical above.
    m0, m1 = r0["memory"], r1["memory"]
    assert int(m0["seen"]) == int(m1["seen"]) == 3 * tiny_train_config().batch_size
    assert not torch.equal(m0["codes"], m1["codes"])
    assert (tmp_path / "run" / "checkpoint.pt").exists()  # rank 0 alone writes the run folder


def test_sprites_config_spells_out_the_default_recipe():
    """configs/sprites.toml says it is ModelConfig() and TrainConfig() as they are: keep the two in step."""
    import tomllib

    from dvgan.config import ModelConfig, TrainConfig, from_dict, to_dict
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "configs", "sprites.toml"), "rb") as f:
        recipe = tomllib.load(f)
    assert to_dict(from_dict(TrainConfig, recipe["train"])) == to_dict(TrainConfig())
    assert to_dict(from_dict(ModelConfig, recipe["model"])) == to_dict(ModelConfig())


def test_shift_moves_each_image_by_at_most_its_bound_and_repeats_the_edges(tmp_path):
    t = Trainer(tiny_model_config(), tiny_train_config(shift=2), {"spec": "sprites:3"}, str(tmp_path), device="cpu")
    x = torch.arange(64 * 3 * 32 * 32, dtype=torch.float32).view(64, 3, 32, 32)
    y = t.shifted(x)
    assert y.shape == x.shape
    seen = set()
    for a, b in zip(x, y):
        # the centre of the shifted image is the original moved by one offset (dy, dx) within [-2, 2]
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(b[:, 4:28, 4:28], a[:, 4 + dy:28 + dy, 4 + dx:28 + dx])]
        assert len(found) == 1
        dy, dx = found[0]
        seen.add(found[0])
        if dy > 0:  # rows moved up: the last rows repeat the original's last row
            assert torch.equal(b[:, -1, 4:28], a[:, -1, 4 + dx:28 + dx])
    assert len(seen) > 10                       # offsets drawn per image
    assert torch.equal(Trainer(tiny_model_config(), tiny_train_config(), {"spec": "sprites:3"}, str(tmp_path),
                               device="cpu").shifted(x), x)   # shift 0 leaves the images alone


@pytest.mark.parametrize("paired", [False, True])
def test_between_identity_term_joins_the_generator_loss(tmp_path, monkeypatch, paired):
    """train.w_zbetween, with the plain share or (zbetween_paired) the one estimated from the pairs
    (mu1, mu1'), mu2 helping with the centre; it moves z's head and not s's."""
    import dvgan.train.step as step
    cfg = tiny_train_config(w_zbetween=1.0, zbetween_paired=paired, w_gan=0.0, w_recon=0.0, w_swap_recon=0.0,
                            w_kl=0.0, w_zadv=0.0, w_sinv=0.0)
    t = Trainer(tiny_model_config(), cfg, {"spec": "sprites:3"}, str(tmp_path), device="cpu")
    before = _snapshot(t.autoencoder.encoder)
    called = []
    for name in ("paired_between_share", "between_identity_share"):
        real = getattr(step, name)
        monkeypatch.setattr(step, name, lambda *a, _real=real, _name=name: called.append(_name) or _real(*a))
    terms = t.train_step()
    assert called == ["paired_between_share" if paired else "between_identity_share"]
    assert terms["zbetween"] == terms["loss"] and terms["zbetween"] != 0.0
    moved = _moved(before, t.autoencoder.encoder)
    assert {"to_z.weight", "to_z.bias"} & moved and not {"to_s.weight", "to_s.bias"} & moved


def test_steps_that_fit_follow_the_pace_and_stay_within_the_plan():
    from dvgan.train.loop import steps_that_fit
    assert steps_that_fit(10, 10, 5.0, 3.0, 100) == 16     # 0.5 s a step, 3 s left: 6 more steps
    assert steps_that_fit(10, 10, 5.0, 300.0, 100) == 100  # never past the steps asked for
    assert steps_that_fit(10, 10, 5.0, 0.0, 100) == 10     # no time left: stop at this step
    assert steps_that_fit(10, 10, 5.0, -2.0, 100) == 10
    assert steps_that_fit(50, 10, 10.0, 4.0, 100) == 54    # resumed: the pace is this session's steps only


def test_steps_that_fit_with_an_adversary_that_joins_late_count_both_paces():
    """train.gan_from 0.5: steps before the join cost early_seconds / early_steps, the rest their own
    pace, or JOINED_STEP_COST times the early one until enough of them have been timed."""
    from dvgan.train.loop import JOINED_STEP_COST, steps_that_fit
    early, joined = 0.5, 0.5 * JOINED_STEP_COST
    # 10 early steps in 5 s, 100 s left: n with (n/2 - 10) early steps and n/2 joined ones in 100 s
    n = steps_that_fit(10, 10, 5.0, 100.0, 1000, 0.5, 10, 5.0)
    assert n == int((100.0 + 10 * early) / (0.5 * early + 0.5 * joined))
    assert abs((n / 2 - 10) * early + n / 2 * joined - 100.0) < joined  # the time left, spent
    assert n < steps_that_fit(10, 10, 5.0, 100.0, 1000)                 # fewer than at the early pace alone
    # joined at step 60: 40 joined steps took 40 s (1 s each), 50 s left: 50 more, all joined
    assert steps_that_fit(100, 100, 70.0, 50.0, 1000, 0.5, 60, 30.0) == 150
    assert steps_that_fit(10, 10, 5.0, 1e6, 1000, 0.5, 10, 5.0) == 1000  # never past the plan
    assert steps_that_fit(10, 10, 5.0, 0.0, 1000, 0.5, 10, 5.0) == 10


def test_a_time_budget_stops_the_run_and_records_what_it_cut(tmp_path):
    from dvgan.train.loop import PACE_AFTER_STEPS
    out = str(tmp_path / "run")
    cfg = tiny_train_config(steps=40, log_every=2, ckpt_every=100)
    # a budget already spent when training starts: the first pace check stops the run
    summary = train(tiny_model_config(), cfg, {"spec": "sprites:3"}, out, device="cpu", progress=False,
                    time_budget=1e-3)
    assert summary["steps"] == PACE_AFTER_STEPS and summary["planned_steps"] == 40
    state = load_checkpoint(out)
    assert state["step"] == PACE_AFTER_STEPS and state["train_config"]["steps"] == PACE_AFTER_STEPS
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["train"]["steps"] == PACE_AFTER_STEPS
    assert config["time_budget"] == {"seconds": 1e-3, "planned_steps": 40}
    assert json.loads(open(os.path.join(out, "metrics.jsonl")).read().splitlines()[-1])["step"] == PACE_AFTER_STEPS

    late = str(tmp_path / "late")  # the same with an adversary that joins at half the steps
    summary = train(tiny_model_config(), tiny_train_config(steps=40, log_every=2, ckpt_every=100, gan_from=0.5),
                    {"spec": "sprites:3"}, late, device="cpu", progress=False, time_budget=1e-3)
    assert summary["steps"] == PACE_AFTER_STEPS and load_checkpoint(late)["train_config"]["steps"] == PACE_AFTER_STEPS

    roomy = str(tmp_path / "roomy")  # a budget with room to spare changes nothing
    summary = train(tiny_model_config(), tiny_train_config(steps=4), {"spec": "sprites:3"}, roomy, device="cpu",
                    progress=False, time_budget=3600)
    assert summary["steps"] == summary["planned_steps"] == 4
    with pytest.raises(ValueError, match="time budget must be > 0"):
        train(tiny_model_config(), tiny_train_config(), {"spec": "sprites:3"}, str(tmp_path / "x"), device="cpu",
              progress=False, time_budget=-1)


def test_epochs_set_the_length_from_the_number_of_training_images(tmp_path):
    """steps is the least a run takes; epochs > 0 lengthens it to that many passes over the training
    images. The caller's config is left as it was."""
    from dvgan.config import TrainConfig
    assert TrainConfig(steps=100, epochs=0, batch_size=32).steps_for(10_000) == 100
    assert TrainConfig(steps=100, epochs=2, batch_size=32).steps_for(10_000) == 625       # ceil(2 * 10000 / 32)
    assert TrainConfig(steps=100, epochs=2, batch_size=32).steps_for(320) == 100          # 20 < 100
    cfg = tiny_train_config(steps=2, epochs=3.0, batch_size=8)
    t = Trainer(tiny_model_config(), cfg, {"spec": "sprites:4"}, str(tmp_path), device="cpu")
    assert t.train_cfg.steps == -(-3 * len(t.images) // 8) > 2
    assert cfg.steps == 2
    with pytest.raises(Exception, match="epochs"):
        TrainConfig(epochs=-1).validate()


@pytest.mark.parametrize("args, named", [
    (["--lr", "0.1"], "--lr"),
    (["--set", "train.lr=0.1"], "--set"),
    (["--config", "configs/sprites.toml"], "--config"),
    (["--data", "sprites:3", "--seed", "4"], "--data, --seed"),
])
def test_resume_refuses_settings_it_would_ignore(tiny_run, args, named):
    """A resumed run takes every setting from its checkpoint: an option that would change one is refused
    with one line, and nothing is trained."""
    from click.testing import CliRunner
    from dvgan.cli.train import main
    before = load_checkpoint(tiny_run)["step"]
    res = CliRunner().invoke(main, ["--out", tiny_run, "--resume", "--no-progress", *args])
    assert res.exit_code == 2 and named in res.output and "ignored" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    assert load_checkpoint(tiny_run)["step"] == before


def test_resume_with_steps_extends_the_run_from_the_command_line(tiny_run, tmp_path):
    import shutil
    from click.testing import CliRunner
    from dvgan.cli.train import main
    run = shutil.copytree(tiny_run, tmp_path / "run")
    res = CliRunner().invoke(main, ["--out", str(run), "--resume", "--steps", "6", "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert load_checkpoint(str(run))["step"] == 6 and "trained to step 6 (2 in this session)" in res.output


def test_training_leaves_the_callers_configs_as_they_were(tmp_path):
    """The trainer sets num_ids from the data and a time budget cuts the steps, on copies of the configs."""
    model_cfg, train_cfg = tiny_model_config(), tiny_train_config(steps=40, ckpt_every=100)
    model_before, train_before = dataclasses.replace(model_cfg), dataclasses.replace(train_cfg)
    trainer = Trainer(model_cfg, train_cfg, {"spec": "sprites:3"}, str(tmp_path / "a"), device="cpu")
    assert trainer.model_cfg.num_ids == len(trainer.id_values) != model_cfg.num_ids and model_cfg == model_before
    summary = train(model_cfg, train_cfg, {"spec": "sprites:3"}, str(tmp_path / "b"), device="cpu", progress=False,
                    time_budget=1e-3)
    assert summary["steps"] < 40 and model_cfg == model_before and train_cfg == train_before


def test_light_scales_each_image_by_its_own_smooth_gain(tmp_path):
    t = Trainer(tiny_model_config(), tiny_train_config(light=1.0), {"spec": "sprites:3"}, str(tmp_path), device="cpu")
    x = torch.full((64, 3, 32, 32), -0.5)
    x[:, :, :4] = -1.0                                    # black rows
    y = t.relit(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    assert torch.equal(y[:, :, :4], x[:, :, :4])          # black stays black
    gain = (y[:, :, 4:] + 1) / (x[:, :, 4:] + 1)          # the gain where nothing clipped
    assert torch.allclose(gain[:, 0], gain[:, 2])         # one gain for every channel of a pixel
    bound = math.exp(0.5 + math.sqrt(2))                 # |level| <= 1/2, |slope * position| <= sqrt(2)
    assert gain.min() >= 1 / bound - 1e-4 and gain.max() <= bound + 1e-4 and gain.max() / gain.min() > 2
    steps = gain[:, 0, 1:, :] / gain[:, 0, :-1, :]        # smooth: neighbouring rows differ a little
    assert (steps - 1).abs().max() < 0.1
    assert gain.flatten(1).std(1).min() > 0 and len({round(float(g.mean()), 4) for g in gain}) > 50
    t0 = Trainer(tiny_model_config(), tiny_train_config(), {"spec": "sprites:3"}, str(tmp_path / "b"), device="cpu")
    assert torch.equal(t0.relit(x), x)                    # light 0 leaves the images alone


def _batch_and_stored(t: Trainer):
    """t.batch(), and the stored images (x1, x1', x2) the sampler drew for it, before any augmentation."""
    state = t.sampler.generator.get_state()
    stored = [t.float_images(i) for i in t.sampler.sample(t.train_cfg.batch_size)]
    t.sampler.generator.set_state(state)
    return t.batch(), stored


@pytest.mark.parametrize("light_on, relit", [("swap", (False, True, False)), ("all", (True, True, True))])
def test_light_on_names_the_photos_that_are_relit(tmp_path, light_on, relit):
    """light_on = "swap": only x1' (another photo of x1's identity, whose s is swapped in) is relit, x1
    and x2 are the stored photos; "all": each of the three is relit."""
    t = Trainer(tiny_model_config(), tiny_train_config(light=1.0, light_on=light_on), {"spec": "sprites:3"},
                str(tmp_path), device="cpu")
    batch, stored = _batch_and_stored(t)
    for x, x_stored, lit in zip((batch.x1, batch.x1p, batch.x2), stored, relit):
        assert torch.equal(x, x_stored) != lit


def test_flip_mirrors_only_x1p_and_the_share_asked(tmp_path):
    """flip = 0.5: about half of x1' (the photo that lends s) comes mirrored left to right, the rest as
    stored; x1 and x2 are never mirrored. flip = 1 mirrors every x1'."""
    for flip in (0.5, 1.0):
        t = Trainer(tiny_model_config(), tiny_train_config(flip=flip, batch_size=64), {"spec": "sprites:3"},
                    str(tmp_path / str(flip)), device="cpu")
        batch, (x1, x1p, x2) = _batch_and_stored(t)
        assert torch.equal(batch.x1, x1) and torch.equal(batch.x2, x2)
        mirrored = torch.tensor([torch.equal(a, b.flip(-1)) for a, b in zip(batch.x1p, x1p)])
        kept = torch.tensor([torch.equal(a, b) for a, b in zip(batch.x1p, x1p)])
        assert bool((mirrored | kept).all())
        symmetric = torch.tensor([torch.equal(b, b.flip(-1)) for b in x1p])
        share = float(mirrored[~symmetric].float().mean())
        assert share == 1.0 if flip == 1.0 else 0.25 < share < 0.75
    with pytest.raises(UsageError, match="flip must be in"):
        tiny_train_config(flip=1.5).validate()


def test_light_on_must_be_a_known_mode():
    with pytest.raises(UsageError, match="light_on"):
        tiny_train_config(light_on="x2").validate()

"""Classification and regression probes on codes: the paper's Table 1 protocol.

A probe is a two-layer MLP (256 hidden units, ReLU, Adam, torch on one thread) on standardized
features, trained with early stopping on a validation part of its own training data (10%, stratified by label): training
stops after ``PATIENCE`` epochs without improvement and the best epoch's weights are kept (the highest
validation accuracy; at equal accuracy the lowest validation loss, for classifiers). The
paper reports train and test error with chance beside them; so do we, with chance error
= 1 - (frequency of the majority class in the probe's test set).

Which images train and test a probe (``probe_split``):
  "train-test"  probe-train = codes of the run's TRAIN split images, probe-test = codes of its TEST
                split images. The standard protocol, for within-identity and fixed splits (MNIST, faces).
  "test-split"  the run's TEST split images alone, divided per label into probe-train and probe-test.
                The only possible protocol for identity-disjoint splits (sprites): a probe cannot name
                identities it never saw, and the test identities were never seen by the model.
"""
from __future__ import annotations

import contextlib
import copy
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from torch import nn

PROTOCOLS = ("train-test", "test-split")
HIDDEN = 256            # units of the probe's hidden layer (the paper's Table 1)
VALIDATION = 0.1        # fraction of the probe's training data used for early stopping
POOL_CONTEXT = "forkserver"  # how run_jobs starts its workers ("fork" deadlocked under load; see run_jobs)
PATIENCE = 10           # epochs without validation improvement before stopping
MAX_EPOCHS = 200        # hard bound on probe epochs
BATCH = 64              # probe minibatch: small enough for many updates per epoch on a few thousand codes
EVAL_FRACTION = 0.25    # "test-split": fraction of each label's test images that tests the probe


def protocols_for(split_kind: str) -> list:
    """Probe protocols a run's split admits, the headline one first."""
    return ["test-split"] if split_kind == "identity" else ["train-test", "test-split"]


def stratified_order(labels, rng: np.random.Generator) -> np.ndarray:
    """A permutation of rows in which every prefix holds each label in about its overall proportion.

    Each row gets the key (its random rank within its label + u) / label count, u ~ U(0, 1);
    taking the rows with the smallest keys draws every label at the same rate.
    """
    labels = np.asarray(labels)
    key = np.empty(len(labels))
    for lab in np.unique(labels):
        rows = np.flatnonzero(labels == lab)
        key[rows] = (rng.permutation(len(rows)) + rng.random(len(rows))) / len(rows)
    return np.argsort(key, kind="stable")


def probe_split(protocol: str, n_train: int, test_labels, seed: int = 0,
                eval_fraction: float = EVAL_FRACTION) -> tuple:
    """(fit rows, eval rows) into the pool [run-train items (n_train); run-test items].

    "train-test": fit = the n_train run-train items, eval = every run-test item.
    "test-split": only run-test items; per label, round(eval_fraction * count) items test the probe and
    the rest train it (a label with one item only trains it). Seeded and deterministic.
    """
    test_labels = np.asarray(test_labels)
    if protocol == "train-test":
        if n_train < 1:
            raise ValueError("the train-test protocol needs run-train items")
        return np.arange(n_train), n_train + np.arange(len(test_labels))
    if protocol != "test-split":
        raise ValueError(f"unknown probe protocol {protocol!r}; use one of {PROTOCOLS}")
    rng = np.random.default_rng(seed)
    fit, held = [], []
    for lab in np.unique(test_labels):
        rows = rng.permutation(np.flatnonzero(test_labels == lab))
        n_eval = int(round(eval_fraction * len(rows))) if len(rows) > 1 else 0
        n_eval = min(max(n_eval, 1 if len(rows) > 1 else 0), len(rows) - 1)
        held += rows[:n_eval].tolist()
        fit += rows[n_eval:].tolist()
    return n_train + np.sort(np.asarray(fit, dtype=np.int64)), n_train + np.sort(np.asarray(held, dtype=np.int64))


def subsample(rows, labels, limit: int | None, seed: int) -> np.ndarray:
    """At most ``limit`` of ``rows``, drawn stratified by label and seeded (all of them if limit is None)."""
    rows = np.asarray(rows)
    if limit is None or len(rows) <= limit:
        return rows
    order = stratified_order(np.asarray(labels)[rows], np.random.default_rng(seed))
    return np.sort(rows[order[:limit]])


def chance_error(labels) -> float:
    """1 - frequency of the majority label."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(1.0 - counts.max() / counts.sum())


@contextlib.contextmanager
def single_thread():
    """Run torch on one thread inside the block, then restore the previous setting.

    Probe networks are small: on a shared 2-core machine a second thread mostly spins waiting for
    the first, many times slower per epoch under load (benchmarks/RESULTS.md, "Evaluation"), and one
    thread is as fast when idle.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def run_jobs(jobs: list, workers: int | None = None) -> list:
    """Run independent probe fits, jobs = [(function, args, kwargs)], in up to ``workers`` processes
    (default: one per core) and return their results in the order given.

    Each fit seeds itself and runs on one thread, so the results are the same as in one process; only
    the wall time changes. The workers come from a fork server (Linux): a process that imported torch
    and this module before any thread ran, so a worker never inherits a lock that a thread of this
    process held at the fork (a plain fork deadlocked that way under load). Elsewhere (macOS makes fork
    unsafe for some libraries), or with one worker or one job, the jobs run here one after another.
    The jobs and their arrays are pickled to the workers, and, as with any fork server, a script that
    calls this must guard its own top-level code with ``if __name__ == "__main__":`` (the workers
    import the script; the dvgan commands do). Put the longest jobs first: they start first.
    """
    workers = min(len(jobs), workers or _cores())
    if workers <= 1 or not sys.platform.startswith("linux"):
        return [fn(*args, **kwargs) for fn, args, kwargs in jobs]
    context = multiprocessing.get_context(POOL_CONTEXT)
    if POOL_CONTEXT == "forkserver":
        context.set_forkserver_preload(["torch", __name__])
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = [pool.submit(fn, *args, **kwargs) for fn, args, kwargs in jobs]
        return [f.result() for f in futures]


class MLPProbe:
    """A fitted probe: standardization, then Linear(d, 256) - ReLU - Linear(256, outputs)."""

    def __init__(self, mean, std, net: nn.Module, classes=None, t_mean=None, t_std=None):
        self.mean, self.std, self.net, self.classes = mean, std, net, classes
        self.t_mean, self.t_std = t_mean, t_std

    @torch.no_grad()
    def raw(self, x) -> torch.Tensor:
        self.net.eval()
        xt = (torch.as_tensor(np.asarray(x, np.float32)) - self.mean) / self.std
        return torch.cat([self.net(xt[i:i + 4096]) for i in range(0, len(xt), 4096)])

    def predict(self, x) -> np.ndarray:
        """Labels (classifier) or targets in their own units (regressor)."""
        out = self.raw(x)
        if self.classes is not None:
            return self.classes[out.argmax(1).numpy()]
        return (out * self.t_std + self.t_mean).numpy().astype(np.float64)


def fit_mlp(x: np.ndarray, y: np.ndarray, *, regress: bool = False, seed: int = 0,
            max_epochs: int = MAX_EPOCHS, patience: int = PATIENCE, classes=None):
    """Fit the probe MLP with early stopping; returns (MLPProbe, epochs run).

    Adam (lr 1e-3), minibatches of BATCH, cross-entropy (classifier) or squared error on the
    standardized target(s) (regressor, y (N,) or (N, T)). The validation part (VALIDATION of the rows,
    stratified by label for classifiers) scores accuracy (ties broken by the validation cross-entropy) or
    mean R^2 after every epoch; training stops after ``patience`` epochs without improvement and the
    best epoch's weights are kept. Features are standardized with the mean and std of all rows.
    """
    x = torch.as_tensor(np.asarray(x, np.float32))
    mean, std = x.mean(0), x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))
    xs = (x - mean) / std
    if regress:
        t = np.asarray(y, np.float64).reshape(len(y), -1)
        t_mean, t_std = t.mean(0), np.where(t.std(0) > 0, t.std(0), 1.0)
        target = torch.as_tensor((t - t_mean) / t_std, dtype=torch.float32)
        classes, n_out = None, t.shape[1]
    else:
        classes = np.unique(y) if classes is None else np.asarray(classes)
        target = torch.as_tensor(np.searchsorted(classes, y))
        n_out = len(classes)
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(VALIDATION * len(y)))) if len(y) >= 10 else 0
    order = stratified_order(np.zeros(len(y)) if regress else y, rng)
    val, fit = torch.as_tensor(np.sort(order[:n_val])), torch.as_tensor(np.sort(order[n_val:]))
    gen = torch.Generator().manual_seed(seed)
    with single_thread(), torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(x.shape[1], HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, n_out))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        loss_fn = nn.functional.mse_loss if regress else nn.functional.cross_entropy
        best, best_score, stale, epochs = copy.deepcopy(net.state_dict()), None, 0, 0
        for epochs in range(1, max_epochs + 1):
            net.train()
            perm = fit[torch.randperm(len(fit), generator=gen)]
            for i in range(0, len(perm), BATCH):
                b = perm[i:i + BATCH]
                loss = loss_fn(net(xs[b]), target[b])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if not n_val:
                best = copy.deepcopy(net.state_dict())
                continue
            with torch.no_grad():
                net.eval()
                out = net(xs[val])
            if regress:
                score = (float(np.mean([r2(target[val, j].numpy(), out[:, j].numpy()) for j in range(n_out)])),)
            else:
                score = validation_score(out, target[val])
            if improves(score, best_score):
                best, best_score, stale = copy.deepcopy(net.state_dict()), score, 0
            else:
                stale += 1
                if stale >= patience:
                    break
        net.load_state_dict(best)
    if regress:
        return MLPProbe(mean, std, net, t_mean=torch.as_tensor(t_mean, dtype=torch.float32),
                        t_std=torch.as_tensor(t_std, dtype=torch.float32)), epochs
    return MLPProbe(mean, std, net, classes=classes), epochs


def nearest_class_mean(x_fit: np.ndarray, y_fit, x_eval: np.ndarray) -> np.ndarray:
    """The label of the class whose mean is nearest each row of x_eval in cosine, after standardizing
    with x_fit's mean and std: a read-out with nothing to train, beside which a probe that errs is the
    probe failing, not the code."""
    y_fit = np.asarray(y_fit)
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
    classes = np.unique(y_fit)
    centres = np.stack([(x_fit[y_fit == c] - mean).mean(0) / std for c in classes])
    q = (x_eval - mean) / std
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return classes[(q @ centres.T).argmax(1)]


def classify(x_fit, y_fit, x_eval, y_eval, *, seed: int = 0, max_epochs: int = MAX_EPOCHS) -> dict:
    """Probe a label from features: train error, test error and chance error (fractions in [0, 1])."""
    y_fit, y_eval = np.asarray(y_fit), np.asarray(y_eval)
    classes = np.unique(np.concatenate([y_fit, y_eval]))
    model, epochs = fit_mlp(x_fit, y_fit, seed=seed, max_epochs=max_epochs, classes=classes)
    with single_thread():
        pred_fit, pred_eval = model.predict(x_fit), model.predict(x_eval)
    return {"train_error": float(np.mean(pred_fit != y_fit)), "test_error": float(np.mean(pred_eval != y_eval)),
            "chance_error": chance_error(y_eval), "epochs": epochs}


def regress(x_fit, t_fit, x_eval, t_eval, *, seed: int = 0, max_epochs: int = MAX_EPOCHS) -> dict:
    """Probe continuous target(s) from features: R^2 on probe-train and probe-test (1 = perfect,
    0 = the mean). t (N,) gives float R^2 values; t (N, T) fits one MLP with T outputs and gives lists.
    """
    t_fit, t_eval = np.asarray(t_fit, np.float64), np.asarray(t_eval, np.float64)
    model, epochs = fit_mlp(x_fit, t_fit, regress=True, seed=seed, max_epochs=max_epochs)
    with single_thread():
        p_fit, p_eval = model.predict(x_fit), model.predict(x_eval)
    tf, te = t_fit.reshape(len(t_fit), -1), t_eval.reshape(len(t_eval), -1)
    train = [r2(tf[:, j], p_fit[:, j]) for j in range(tf.shape[1])]
    test = [r2(te[:, j], p_eval[:, j]) for j in range(te.shape[1])]
    if t_fit.ndim == 1:
        train, test = train[0], test[0]
    return {"train_r2": train, "test_r2": test, "epochs": epochs}


def r2(target, pred) -> float:
    """Coefficient of determination, 1 - SSE / SST."""
    target, pred = np.asarray(target, np.float64), np.asarray(pred, np.float64)
    sst = np.sum((target - target.mean()) ** 2)
    return float(1.0 - np.sum((target - pred) ** 2) / sst) if sst > 0 else 0.0


class SmallCNN(nn.Module):
    """The image-classifier reference: two 3x3 stride-2 convs (16, 32 channels) + FC 128 + FC classes."""

    def __init__(self, channels: int, size: int, classes: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, 3, 2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(32 * ((size + 3) // 4) ** 2, 128), nn.ReLU(), nn.Linear(128, classes))

    def forward(self, x):  # (B, C, H, W) -> (B, classes)
        return self.net(x)


def cnn_classify(img_fit: np.ndarray, y_fit, img_eval: np.ndarray, y_eval, *, seed: int = 0,
                 epochs: int = 6, batch_size: int = 64) -> dict:
    """Train SmallCNN on images float (N, C, H, W) in [-1, 1]; same outputs as ``classify``.

    Adam 1e-3 for at most ``epochs`` epochs; the epoch with the best accuracy on a 10% validation
    part of the training images is kept (the same early stopping as the MLP probe).
    """
    with single_thread():
        return _cnn_classify(img_fit, y_fit, img_eval, y_eval, seed, epochs, batch_size)


def _cnn_classify(img_fit, y_fit, img_eval, y_eval, seed, epochs, batch_size) -> dict:
    y_fit, y_eval = np.asarray(y_fit), np.asarray(y_eval)
    net, classes = fit_cnn(img_fit, y_fit, seed=seed, epochs=epochs, batch_size=batch_size,
                           classes=np.unique(np.concatenate([y_fit, y_eval])))
    pred_fit = cnn_predict(net, classes, img_fit)
    pred_eval = cnn_predict(net, classes, img_eval)
    return {"train_error": float(np.mean(pred_fit != y_fit)), "test_error": float(np.mean(pred_eval != y_eval)),
            "chance_error": chance_error(y_eval), "epochs": epochs}


def fit_cnn(img_fit: np.ndarray, y_fit, *, seed: int = 0, epochs: int = 6, batch_size: int = 64,
            classes=None) -> tuple:
    """Train SmallCNN on float images (N, C, H, W) in [-1, 1] with labels y_fit; (net, classes).

    Adam 1e-3 for ``epochs`` epochs; the epoch with the best accuracy on a stratified 10% validation
    part of the images is kept (at equal accuracy the lower validation loss, as for the MLP probe).
    ``classes`` (sorted labels, default those of y_fit) are the outputs.
    The caller chooses the thread count (``cnn_classify`` runs it on one).
    """
    y_fit = np.asarray(y_fit)
    classes = np.unique(y_fit) if classes is None else np.asarray(classes)
    to_class = {c: i for i, c in enumerate(classes.tolist())}
    t_fit = torch.tensor([to_class[c] for c in y_fit.tolist()])
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(VALIDATION * len(y_fit)))) if len(y_fit) >= 10 else 0
    order = stratified_order(y_fit, rng)
    val, fit = torch.from_numpy(np.sort(order[:n_val])), torch.from_numpy(np.sort(order[n_val:]))
    x_fit = torch.from_numpy(np.asarray(img_fit, np.float32))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = SmallCNN(x_fit.shape[1], x_fit.shape[2], len(classes))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    best, best_score = copy.deepcopy(net.state_dict()), None
    for _ in range(epochs):
        net.train()
        perm = fit[torch.randperm(len(fit), generator=gen)]
        for i in range(0, len(perm), batch_size):
            b = perm[i:i + batch_size]
            loss = nn.functional.cross_entropy(net(x_fit[b]), t_fit[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if n_val:
            score = validation_score(_logits(net, x_fit[val]), t_fit[val])
            if improves(score, best_score):
                best, best_score = copy.deepcopy(net.state_dict()), score
        else:
            best = copy.deepcopy(net.state_dict())
    net.load_state_dict(best)
    return net, classes


def cnn_predict(net: nn.Module, classes: np.ndarray, images: np.ndarray) -> np.ndarray:
    """The labels a fit_cnn network gives float images (N, C, H, W)."""
    return classes[_predict(net, torch.from_numpy(np.asarray(images, np.float32))).numpy()]


def validation_score(logits: torch.Tensor, target: torch.Tensor) -> tuple:
    """(accuracy, -cross-entropy) of a classifier's validation logits: accuracy first; at equal accuracy
    the lower loss wins, so that on a small validation part (a dozen images) the first epoch to name them
    all is not kept underfit."""
    return (float((logits.argmax(1) == target).float().mean()), -float(nn.functional.cross_entropy(logits, target)))


def improves(score: tuple, best: tuple | None, tol: float = 1e-4) -> bool:
    """Whether a validation score beats the best so far: compared element by element, each later one
    deciding only when the earlier ones tie within tol."""
    if best is None:
        return True
    for new, old in zip(score, best):
        if new > old + tol:
            return True
        if new < old - tol:
            return False
    return False


@torch.no_grad()
def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """net's outputs on x in eval mode, 1,024 rows at a time."""
    net.eval()
    return torch.cat([net(x[i:i + 1024]) for i in range(0, len(x), 1024)])


def _predict(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return _logits(net, x).argmax(1)

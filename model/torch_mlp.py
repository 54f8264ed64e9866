"""A one-hidden-layer torch MLP with dropout, and Monte-Carlo dropout inference.

Used by :class:`model.estimators.ChoiceClassifier` with ``model="mlp"``; arrays in, arrays out.

Design decisions, and why:

* **Weights live in numpy arrays** (a ``dict[str, np.ndarray]``), never in a torch module or
  a pickle. The estimator stores that dict, so model.persistence stores it like any other array and a
  model file cannot run code when loaded. Inference rebuilds tensors with ``torch.from_numpy``
  (zero-copy on the CPU), which costs microseconds.
* **Functional network, explicit generators.** Initialisation and shuffling use a seeded numpy
  generator, dropout masks a seeded ``torch.Generator``; nothing touches torch's global RNG,
  so fitting one model cannot change another's randomness and the same seed gives the same
  weights and the same MC samples (on one device; CPU and CUDA generators differ).
* **Sparse input without densifying.** tf-idf matrices have tens of thousands of columns and
  ~100 non-zeros per row. The first layer is ``F.embedding_bag(mode="sum")`` over the CSR
  indices weighted by the tf-idf values -- exactly ``X @ W0`` for sparse ``X`` -- so memory and
  time scale with the non-zeros, not with the vocabulary. Dense pixel features use ``X @ W0``.
* **Dropout only after the hidden layer** (input -> Linear -> ReLU -> Dropout -> Linear). The
  expensive part of a forward pass -- feature extraction and the first layer over a wide
  input -- is then deterministic and computed once per task; Monte-Carlo dropout only repeats
  the cheap part after the first mask. The T passes are one batched computation over a
  ``(T, n, hidden)`` mask tensor, chunked over the tasks to bound memory, not T Python loops.
  The price is that the approximate posterior covers the output layer only ("last-layer MC
  dropout"); no input dropout is used for the same reason.
* **Cheap masks.** Drawing one float per mask element dominated MC inference (a
  (20, 10000, 128) mask is 25.6 M draws). Masks are instead cut from random bytes, eight per
  64-bit draw, and an element is kept when its byte is below ``round(256 * keep)``: the
  dropout rate is applied at a resolution of 1/256 (0.5 exactly; a requested 0.1 becomes
  26/256 = 0.1016), and activations are rescaled by the rate actually used. This halved the
  cost of T = 20 passes on 10,000 tasks on the CPU when each task had its own masks; training
  still draws one mask element per hidden unit and row.
* **Consistent masks.** Sample t uses the same dropout mask for every task: T sub-networks,
  each applied to the whole input ("consistent MC dropout", as BatchBALD uses). A task's T
  samples are then a function of the task alone, not of which tasks share its request or chunk:
  /predict gives a task the same BALD score in a batch of 1 or of 1,000, and scores of different
  tasks compare draws of the same T networks rather than of independent noise.
* **One intra-op thread on the CPU** by default (see :func:`model.device.cpu_threads`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from model import mlp_inference
from model.device import cpu_threads
from model.mlp_inference import mc_masks

#: Fewest optimiser steps a fit takes whatever ``epochs`` says. A first labelling round has
#: 10-30 rows, i.e. one mini-batch per epoch: ``epochs`` steps alone would leave the network
#: close to its random initialisation.
MIN_STEPS = 150


#: First-layer initialisation scale relative to He initialisation (see :func:`_init_weights`).
INIT_SCALE = 0.1


@dataclass(frozen=True)
class MLPParams:
    """Training hyper-parameters; the defaults fit ~1,000 rows in about a second on 2 cores."""

    hidden_size: int = 128
    dropout: float = 0.5
    epochs: int = 20
    lr: float = 3e-3
    weight_decay: float = 1e-4
    batch_size: int = 128

    def validate(self) -> None:
        """Raise ValueError for values that would fail deep inside torch or train nothing."""
        if self.hidden_size < 1:
            raise ValueError(f"hidden_size must be >= 1, got {self.hidden_size!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs!r}")
        if not self.lr > 0.0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0.0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size!r}")


def fit_mlp(
    features: Any,
    targets: np.ndarray,
    *,
    n_outputs: int,
    multi_label: bool,
    params: MLPParams,
    seed: int,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """Train the MLP and return its weights as float32 numpy arrays ``w0, b0, w1, b1``.

    ``features``: (N, F) scipy sparse matrix or dense array. ``targets``: int codes in
    ``[0, n_outputs)`` (softmax + cross-entropy) or, with ``multi_label``, a 0/1 matrix
    (N, n_outputs) (one sigmoid + binary cross-entropy per label). The same ``seed`` on the
    same device gives the same weights.
    """
    params.validate()
    with cpu_threads(device):
        trained = _train(features, targets, n_outputs, multi_label, params, seed, device)
    return {name: t.detach().cpu().numpy().astype(np.float32) for name, t in trained.items()}


def mlp_proba(
    weights: dict[str, np.ndarray],
    features: Any,
    *,
    multi_label: bool,
    device: torch.device,
    n_samples: int | None = None,
    dropout: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Return float64 probabilities: (N, K) deterministically, or (T, N, K) MC-dropout samples.

    The GPU path of :func:`model.mlp_inference.mlp_proba_numpy` (``LABELLOOP_DEVICE=cuda``), with the
    same consistent masks. With ``n_samples=None`` dropout is off (the usual weight-scaling
    approximation of the expected prediction). With ``n_samples=T`` each chunk of tasks runs one
    batched pass; the same ``seed`` and task give identical samples, whatever its batch.
    Softmax / sigmoid are computed in float64 so that rows sum to 1 to float64 precision.
    """
    if n_samples is not None and (isinstance(n_samples, bool) or n_samples < 1):
        raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
    n_rows = features.shape[0]
    n_outputs = weights["w1"].shape[1]
    shape = (n_rows, n_outputs) if n_samples is None else (n_samples, n_rows, n_outputs)
    out = np.zeros(shape, dtype=np.float64)
    if n_rows == 0:
        return out
    with cpu_threads(device), torch.inference_mode():
        _predict_into(out, weights, features, multi_label, device, n_samples, dropout, seed)
    return out


def _train(
    features: Any,
    targets: np.ndarray,
    n_outputs: int,
    multi_label: bool,
    params: MLPParams,
    seed: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    n_rows = features.shape[0]
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    init = _init_weights(features, n_outputs, params.hidden_size, rng)
    w = {name: torch.tensor(value, device=device, requires_grad=True) for name, value in init.items()}
    csr = features.tocsr() if sp.issparse(features) else None
    # Sparse input: w0 has one row per vocabulary entry (up to 100,000) while a batch touches a
    # few thousand, so only those rows are gathered, differentiated and updated (RowAdam): a step
    # costs O(touched rows x hidden), not O(vocabulary x hidden). A dense AdamW over w0 spent most
    # of a fit in the optimiser (1,000 synthetic reviews, 5k vocabulary: 3.3 s vs 2.4 s at batch
    # size 64); torch's SparseAdam, the same update, spent 70 % of a fit coalescing and masking
    # sparse gradients (RowAdam: a fit on 200 docstrings 2.9 -> 2.2 s, on 2,000 8.3 -> 6.4 s).
    # No weight decay on w0: the dropout after it, its small initialisation and the step budget
    # regularise it.
    dense_weights = [w["w1"]] if csr is not None else [w["w0"], w["w1"]]
    optimiser = torch.optim.AdamW(
        [
            {"params": dense_weights, "weight_decay": params.weight_decay},
            {"params": [w["b0"], w["b1"]], "weight_decay": 0.0},
        ],
        lr=params.lr,
        foreach=True,
    )
    row_adam = None
    if csr is not None:
        w["w0"].requires_grad_(False)
        row_adam = RowAdam(w["w0"], lr=params.lr)
    y_all = torch.as_tensor(np.asarray(targets, dtype=np.float32 if multi_label else np.int64), device=device)
    dense = None if csr is not None else torch.as_tensor(np.asarray(features, dtype=np.float32), device=device)

    bounds = batch_bounds(n_rows, params.batch_size)
    epochs = max(params.epochs, math.ceil(MIN_STEPS / len(bounds)))
    for _ in range(epochs):
        order = rng.permutation(n_rows)
        for start, stop in bounds:
            rows = order[start:stop]
            index = torch.as_tensor(rows, device=device)
            if row_adam is not None:
                x, touched = _gathered_input(csr[rows], device)
                w0 = w["w0"].index_select(0, touched).requires_grad_()
            else:
                x, w0 = dense[index], w["w0"]
            hidden = _hidden(x, w0, w["b0"])
            if params.dropout > 0.0:
                hidden = hidden * _dropout_mask(hidden.shape, params.dropout, generator, device)
            logits = hidden @ w["w1"] + w["b1"]
            if multi_label:
                loss = F.binary_cross_entropy_with_logits(logits, y_all[index])
            else:
                loss = F.cross_entropy(logits, y_all[index])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if row_adam is not None:
                assert w0.grad is not None
                row_adam.step(touched, w0.grad)
    return w


def batch_bounds(n_rows: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the mini-batches of one epoch: ``ceil(n / batch_size)`` balanced slices.

    Every row is used once per epoch, no batch exceeds ``batch_size``, and the sizes differ by
    at most one row, so none is smaller than ``min(batch_size, n) // 2``. The naive
    ``range(0, n, batch_size)`` leaves a trailing batch of ``n % batch_size`` rows, and at
    ``n = k * batch_size + 1`` or ``+ 2`` that one- or two-row batch was the last optimiser
    step of every epoch: its noisy gradient cost the final model up to 6 points of accuracy on
    digits (129 labels: 85.5 % vs 92.0 % on 128, mean of 3 seeds).
    """
    if n_rows < 1 or batch_size < 1:
        raise ValueError(f"need n_rows >= 1 and batch_size >= 1, got {n_rows} and {batch_size}")
    return balanced_bounds(n_rows, math.ceil(n_rows / batch_size))


def balanced_bounds(n_rows: int, n_batches: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``n_batches`` consecutive slices of ``n_rows`` whose sizes differ by at most one."""
    base, extra = divmod(n_rows, n_batches)
    bounds, start = [], 0
    for i in range(n_batches):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _predict_into(
    out: np.ndarray,
    weights: dict[str, np.ndarray],
    features: Any,
    multi_label: bool,
    device: torch.device,
    n_samples: int | None,
    dropout: float,
    seed: int,
) -> None:
    w0, b0, w1, b1 = (torch.from_numpy(weights[k]).to(device) for k in ("w0", "b0", "w1", "b1"))
    n_rows, hidden_size = features.shape[0], w0.shape[1]
    csr = features.tocsr() if sp.issparse(features) else None
    chunk = max(1, mlp_inference.MC_CHUNK_ELEMENTS // (hidden_size * (n_samples or 1)))
    masks = None  # (T, 1, H): one mask per sample, shared by every task; the numpy path's own masks
    if n_samples is not None and dropout > 0.0:
        masks = torch.from_numpy(mc_masks(n_samples, hidden_size, dropout, seed)).to(device)
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        if csr is not None:
            x = _sparse_input(csr[start:stop], device)
        else:
            x = torch.as_tensor(np.asarray(features[start:stop], dtype=np.float32), device=device)
        hidden = _hidden(x, w0, b0)  # (n, H): computed once, shared by all T samples
        if n_samples is None:
            out[start:stop] = _activate(hidden @ w1 + b1, multi_label).cpu().numpy()
            continue
        if masks is not None:
            masked = masks * hidden
        else:
            masked = hidden.expand(n_samples, *hidden.shape)
        logits = masked @ w1 + b1  # (T, n, K): all T passes in one batched matmul
        out[:, start:stop] = _activate(logits, multi_label).cpu().numpy()


def _dropout_mask(
    shape: tuple[int, ...], dropout: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Float32 inverted-dropout mask: 0 with probability ~``dropout``, else ``1 / keep``.

    Cut from random bytes, eight per 64-bit draw (see the module docstring); ``keep`` is the
    rate actually applied, ``round(256 * (1 - dropout)) / 256`` kept within [1/256, 255/256].
    """
    threshold = min(255, max(1, round(256 * (1.0 - dropout))))
    n = math.prod(shape)
    # random_(INT64_MIN, None) is torch's "full 64-bit range" draw (CPU and CUDA kernels): all
    # 8 bytes uniform. The default random_() would leave the sign bit 0 and bias one byte in 8.
    words = torch.empty((n + 7) // 8, dtype=torch.int64, device=device).random_(-(2**63), None, generator=generator)
    random_bytes = words.view(torch.uint8)[:n].view(shape)
    return (random_bytes < threshold).to(torch.float32).mul_(256.0 / threshold)


def _init_weights(features: Any, n_outputs: int, hidden_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Small first-layer weights, scaled by the data's mean squared row norm, not by the width.

    ``Var(x . w) = ||x||^2 Var(w)`` for independent weights, so ``std = INIT_SCALE *
    sqrt(2 / E||x||^2)`` gives ReLU pre-activations of ``INIT_SCALE`` size for sparse text
    (~100 non-zeros of ~50,000 columns, unit norm per tf-idf block) and dense pixels alike; the
    usual ``1/fan_in`` rule assumes dense unit-variance inputs and would depend on the
    vocabulary size instead. The scale is deliberately well below He's 1: at full scale the
    network starts as a random-features model whose random hidden units outweigh what the
    ~150 Adam steps of a first round can learn (each moves a weight by at most ~lr), which
    cost 13 points of accuracy with 30 labelled synthetic reviews and made held-out
    predictions on 15 texts depend on the seed. Measured, 0.03-0.3 all worked; 0.1 is used.
    """
    n_rows, n_features = features.shape
    if sp.issparse(features):
        sq_norm = float(features.multiply(features).sum()) / max(n_rows, 1)
    else:
        sq_norm = float(np.square(np.asarray(features, dtype=np.float64)).sum()) / max(n_rows, 1)
    std0 = INIT_SCALE * (math.sqrt(2.0 / sq_norm) if sq_norm > 0 else 1.0)
    return {
        "w0": rng.normal(0.0, std0, size=(n_features, hidden_size)).astype(np.float32),
        "b0": np.zeros(hidden_size, dtype=np.float32),
        "w1": rng.normal(0.0, math.sqrt(1.0 / hidden_size), size=(hidden_size, n_outputs)).astype(np.float32),
        "b1": np.zeros(n_outputs, dtype=np.float32),
    }


class RowAdam:
    """Adam on the rows of a large matrix that one step touches: torch.optim.SparseAdam's update,
    computed on the gathered rows with dense tensor ops.

    SparseAdam takes the gradient as a sparse tensor with one entry per input non-zero and spends
    most of its time coalescing and masking it; here the caller gathers the touched rows once
    (``rows``, unique), differentiates them as a small dense matrix and hands that gradient in.
    As in SparseAdam, the moments of untouched rows are left alone (no decay) and the bias
    correction uses the global step count.
    """

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.exp_avg = torch.zeros_like(param)
        self.exp_avg_sq = torch.zeros_like(param)
        self.steps = 0

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor) -> None:
        """Update ``param[rows]`` with their gradient ``grad`` (``rows`` unique)."""
        self.steps += 1
        beta1, beta2 = self.betas
        exp_avg = self.exp_avg.index_select(0, rows).mul_(beta1).add_(grad, alpha=1.0 - beta1)
        exp_avg_sq = self.exp_avg_sq.index_select(0, rows).mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
        self.exp_avg.index_copy_(0, rows, exp_avg)
        self.exp_avg_sq.index_copy_(0, rows, exp_avg_sq)
        step_size = self.lr * math.sqrt(1.0 - beta2**self.steps) / (1.0 - beta1**self.steps)
        self.param.index_add_(0, rows, exp_avg.div_(exp_avg_sq.sqrt_().add_(self.eps)), alpha=-step_size)


def _gathered_input(csr: sp.csr_matrix, device: torch.device) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """CSR rows as ``(indices, offsets, values)`` over their own columns, and those columns (unique,
    sorted): ``embedding_bag`` over ``w0[columns]`` with these indices equals it over ``w0``."""
    columns, local = np.unique(csr.indices, return_inverse=True)
    x = (
        torch.as_tensor(local.astype(np.int64, copy=False).reshape(-1), device=device),
        torch.as_tensor(csr.indptr[:-1].astype(np.int64, copy=False), device=device),
        torch.as_tensor(csr.data.astype(np.float32, copy=False), device=device),
    )
    return x, torch.as_tensor(columns.astype(np.int64, copy=False), device=device)


def _sparse_input(csr: sp.csr_matrix, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """CSR rows as ``(indices, offsets, values)`` for ``F.embedding_bag``."""
    return (
        torch.as_tensor(csr.indices.astype(np.int64, copy=False), device=device),
        torch.as_tensor(csr.indptr[:-1].astype(np.int64, copy=False), device=device),
        torch.as_tensor(csr.data.astype(np.float32, copy=False), device=device),
    )


def _hidden(x: Any, w0: torch.Tensor, b0: torch.Tensor) -> torch.Tensor:
    """ReLU(x @ w0 + b0) for dense ``x`` or the ``(indices, offsets, values)`` of sparse rows."""
    if isinstance(x, tuple):
        indices, offsets, values = x
        pre = F.embedding_bag(indices, w0, offsets, mode="sum", per_sample_weights=values)
    else:
        pre = x @ w0
    return torch.relu(pre + b0)


def _activate(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    logits = logits.double()
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=-1)

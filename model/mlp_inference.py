"""The MLP's forward pass in numpy / scipy: what serving needs, without importing torch.

Training stays in torch (:mod:`model.torch_mlp`: autograd, optimisers, CUDA). Inference is two
matrix products and a softmax, and importing torch costs a serving worker about 180 MB of resident
memory (measured: 153 -> 332 MB), more than the model itself. So /predict and a round's scoring
run here on the CPU, and a worker that never trains never imports torch. ``LABELLOOP_DEVICE=cuda``
still scores on the GPU through :func:`model.torch_mlp.mlp_proba`, with the same masks.

Monte-Carlo dropout uses *consistent* masks: sample t applies one mask to every task (a
``(T, 1, hidden)`` array drawn from the model's seed), so a task's T samples are a function of the
task alone -- /predict gives it the same BALD score in a batch of 1 or of 1,000 -- and the scores of
different tasks compare draws of the same T sub-networks. Dropout sits after the hidden layer only
(see model.torch_mlp), so the hidden activations are computed once per task and shared by the T
samples.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import expit

from model.device import DEVICE_ENV_VAR

#: Upper bound on the float32 elements of the ``(T, n, hidden)`` activations per chunk of tasks
#: (2**20 floats = 4 MiB), here and in the torch path: larger inputs are scored in chunks, which
#: bounds memory and, with consistent masks, changes no result. Measured on the CPU (torch),
#: chunks of 2**18-2**22 elements were equally fast and 2**24 was 1.6x slower (fresh 64 MiB
#: buffers per chunk mean page faults, not arithmetic).
MC_CHUNK_ELEMENTS = 2**20


def mc_masks(n_samples: int, hidden_size: int, dropout: float, seed: int) -> np.ndarray:
    """Float32 inverted-dropout masks of shape ``(T, 1, hidden)``: 0 with probability ~``dropout``, else
    ``1 / keep``. An element is kept when its random byte is below ``round(256 * keep)``, the same
    1/256 resolution as training's masks (model.torch_mlp._dropout_mask), rescaled by the rate used."""
    threshold = min(255, max(1, round(256 * (1.0 - dropout))))
    draws = np.random.default_rng(seed).integers(0, 256, size=(n_samples, 1, hidden_size), dtype=np.uint8)
    return (draws < threshold).astype(np.float32) * np.float32(256.0 / threshold)


def uses_torch_for_inference() -> bool:
    """Whether the operator asked for the GPU (``LABELLOOP_DEVICE=cuda...``); otherwise numpy, no torch import."""
    return os.environ.get(DEVICE_ENV_VAR, "").strip().lower().startswith("cuda")


def mlp_proba_numpy(
    weights: dict[str, np.ndarray],
    features: Any,
    *,
    multi_label: bool,
    n_samples: int | None = None,
    dropout: float = 0.5,
    seed: int = 0,
) -> np.ndarray:
    """Float64 probabilities: (N, K) with dropout off, or (T, N, K) Monte-Carlo dropout samples.

    ``features``: (N, F) scipy sparse or dense. Softmax / sigmoid are computed in float64 so rows
    sum to 1 to float64 precision. The same weights, seed and task give the same samples.
    """
    if n_samples is not None and (isinstance(n_samples, bool) or n_samples < 1):
        raise ValueError(f"n_samples must be >= 1, got {n_samples!r}")
    w0, b0, w1, b1 = (np.asarray(weights[k], dtype=np.float32) for k in ("w0", "b0", "w1", "b1"))
    n_rows, hidden_size = features.shape[0], w0.shape[1]
    shape = (n_rows, w1.shape[1]) if n_samples is None else (n_samples, n_rows, w1.shape[1])
    out = np.zeros(shape, dtype=np.float64)
    masks = mc_masks(n_samples, hidden_size, dropout, seed) if n_samples is not None and dropout > 0.0 else None
    # float32 like the weights: a float64 input would make scipy copy w0 (vocabulary x hidden) to float64 per chunk.
    csr = features.tocsr().astype(np.float32, copy=False) if sp.issparse(features) else None
    chunk = max(1, MC_CHUNK_ELEMENTS // (hidden_size * (n_samples or 1)))
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        x = csr[start:stop] if csr is not None else np.asarray(features[start:stop], dtype=np.float32)
        hidden = np.maximum(np.asarray(x @ w0, dtype=np.float32) + b0, 0.0)  # (n, H), shared by all samples
        if n_samples is None:
            out[start:stop] = activate(hidden @ w1 + b1, multi_label)
        elif masks is None:
            out[:, start:stop] = activate(hidden @ w1 + b1, multi_label)[None]
        else:
            out[:, start:stop] = activate((masks * hidden) @ w1 + b1, multi_label)  # (T, n, K) in one product
    return out


def activate(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Sigmoid per label, or softmax over the last axis, in float64."""
    logits = np.asarray(logits, dtype=np.float64)
    if multi_label:
        return expit(logits)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)

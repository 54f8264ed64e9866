"""Training loop and batched inference of the detection network (torch); numpy in, numpy out.

Kept apart from :mod:`model.detection.detector` so that importing the estimator -- which
:mod:`model.persistence` does to recognise its class in model files -- does not import torch: a
server that never fits a detector must not pay torch's multi-second import (the same rule as
:mod:`model.estimators` follows for the MLP).

Randomness goes through explicit generators only (a numpy ``Generator`` for initialisation,
batch order and augmentation; a ``torch.Generator`` for dropout masks), never torch's global RNG,
so fitting one model cannot change another's randomness and the same seed gives the same weights
on one device.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.detection import network
from model.detection.boxes import affine_boxes
from model.detection.images import resize_batch
from model.torch_mlp import balanced_bounds

#: AdamW weight decay (not applied to batch-norm parameters and biases).
WEIGHT_DECAY = 1e-4
#: Linear learning-rate warm-up, in optimiser steps (batch-norm statistics settle meanwhile).
WARMUP_STEPS = 20
#: Gradient norm clip: the focal loss of a fresh network spikes on images with many objects.
CLIP_NORM = 10.0
#: Augmentation: zoom factors (log-uniform; < 1 shrinks the image into a grey frame), gain and
#: shift of the pixel values (0-255 scale).
ZOOM_RANGE = (0.6, 1.6)
GAIN_RANGE = (0.7, 1.3)
SHIFT = 30.0
#: Crop-classifier training: at most this many boxes per step (a random subset), each crop's centre
#: moved by up to JITTER of the box size and its context factor drawn from CONTEXT_RANGE, so that
#: the classifier also names the imperfect boxes the detector will hand it.
MAX_CROPS = 64
JITTER = 0.1
CONTEXT_RANGE = (1.1, 1.5)
#: MC passes classify (and so return) only candidates with objectness at least this (or the score
#: threshold, if higher): the weakest candidates are noise in every pass, and cropping and
#: classifying them T times took most of the time of ``predict_samples``.
SAMPLE_MIN_SCORE = 0.1


@dataclass(frozen=True)
class TrainConfig:
    """What :func:`train` needs besides the data (validated by the estimator)."""

    n_classes: int
    n_steps: int
    batch_size: int
    learning_rate: float
    dropout: float
    augment: bool


def train(
    pixels: np.ndarray,
    boxes: list[np.ndarray],
    labels: list[np.ndarray],
    config: TrainConfig,
    init: dict[str, np.ndarray],
    seed: int,
    device: torch.device,
) -> tuple[dict[str, np.ndarray], list[float]]:
    """Train from ``init`` on uint8 (n, 3, S, S) ``pixels``; return float32 weights and the mean loss per epoch.

    ``config.n_steps`` optimiser steps over balanced mini-batches (:func:`batch_bounds`), a fresh
    permutation per epoch; the last epoch may be partial.
    """
    rng = np.random.default_rng(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    w = {k: channels_last(torch.tensor(v, device=device)).requires_grad_(not network.is_buffer(k))
         for k, v in init.items()}
    decayed = [v for k, v in w.items() if k.endswith(".w")]
    plain = [v for k, v in w.items() if not k.endswith(".w") and not network.is_buffer(k)]
    optimiser = torch.optim.AdamW([{"params": decayed, "weight_decay": WEIGHT_DECAY},
                                   {"params": plain, "weight_decay": 0.0}], lr=config.learning_rate, foreach=True)
    images = torch.from_numpy(pixels).to(device)
    grid = pixels.shape[-1] // network.STRIDE
    losses: list[float] = []
    step = 0
    while step < config.n_steps:
        order, total, seen = rng.permutation(len(pixels)), 0.0, 0
        for start, stop in batch_bounds(len(pixels), config.batch_size):
            if step == config.n_steps:
                break
            rows = order[start:stop]
            x, batch_boxes, batch_labels = augmented_batch(images, boxes, labels, rows, rng, config.augment)
            targets = network.make_targets(batch_boxes, grid, device)
            head, _ = network.trunk(x, w, train=True)
            if config.dropout > 0:
                head = dropped(head, config.dropout, generator)
            value = network.box_loss(network.output_layer(head, w), targets)
            if config.n_classes > 1 and any(len(b) for b in batch_boxes):
                value = value + network.CLASS_WEIGHT * _crop_loss(x, w, batch_boxes, batch_labels, config, rng,
                                                                  generator)
            for group in optimiser.param_groups:
                group["lr"] = learning_rate(step, config.n_steps, config.learning_rate)
            optimiser.zero_grad(set_to_none=True)
            value.backward()
            torch.nn.utils.clip_grad_norm_(decayed + plain, CLIP_NORM)
            optimiser.step()
            total, seen, step = total + float(value.detach()) * len(rows), seen + len(rows), step + 1
        losses.append(total / max(seen, 1))
    weights = {k: np.ascontiguousarray(v.detach().cpu().numpy(), dtype=np.float32) for k, v in w.items()}
    return weights, losses


def _crop_loss(
    x: torch.Tensor, w: dict[str, torch.Tensor], boxes: list[np.ndarray], labels: list[np.ndarray],
    config: TrainConfig, rng: np.random.Generator, generator: torch.Generator,
) -> torch.Tensor:
    """Cross-entropy of the crop classifier on jittered crops of (at most :data:`MAX_CROPS`) true boxes."""
    image_index = np.concatenate([np.full(len(b), i) for i, b in enumerate(boxes)])
    all_boxes, all_labels = np.concatenate(boxes), np.concatenate(labels)
    if len(all_boxes) > MAX_CROPS:
        pick = rng.choice(len(all_boxes), MAX_CROPS, replace=False)
        image_index, all_boxes, all_labels = image_index[pick], all_boxes[pick], all_labels[pick]
    size = all_boxes[:, 2:] - all_boxes[:, :2]
    moved = all_boxes + np.tile(rng.uniform(-JITTER, JITTER, (len(all_boxes), 2)) * size, 2)
    context = rng.uniform(*CONTEXT_RANGE, len(all_boxes))
    device = x.device
    as_float = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    c = network.crops(x, torch.as_tensor(image_index, device=device), as_float(moved), as_float(context))
    features = network.crop_features(channels_last(c), w, train=True)
    if config.dropout > 0:
        features = dropped(features, config.dropout, generator)
    targets = torch.as_tensor(all_labels.astype(np.int64), device=device)
    return F.cross_entropy(network.class_logits(features, w), targets)


def augmented_batch(
    images: torch.Tensor, boxes: list[np.ndarray], labels: list[np.ndarray], rows: np.ndarray,
    rng: np.random.Generator, augment: bool,
) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    """Normalised float batch of ``rows`` with their boxes and labels; with ``augment``: a random
    colour-channel permutation, gain and shift per image, then one affine resampling for zoom, shift
    and mirror flips (boxes follow; boxes mostly pushed out of the frame are dropped)."""
    device = images.device
    x = images[torch.as_tensor(rows, device=device)].float()
    if not augment:
        return channels_last(normalise(x)), [boxes[i] for i in rows], [labels[i] for i in rows]
    n = len(rows)
    order = torch.as_tensor(np.argsort(rng.random((n, 3)), axis=1), device=device)
    x = x.gather(1, order[:, :, None, None].expand_as(x))
    gain = torch.as_tensor(rng.uniform(*GAIN_RANGE, n), dtype=torch.float32, device=device)[:, None, None, None]
    shift = torch.as_tensor(rng.uniform(-SHIFT, SHIFT, n), dtype=torch.float32, device=device)[:, None, None, None]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = normalise(((x - mean) * gain + mean + shift).clamp_(0, 255))
    scale = np.exp(rng.uniform(np.log(ZOOM_RANGE[0]), np.log(ZOOM_RANGE[1]), n))
    signs = np.where(rng.random((n, 2)) < 0.5, -1.0, 1.0)
    offset = rng.uniform(-1.0, 1.0, (n, 2)) * np.abs(1.0 - 1.0 / scale)[:, None]
    theta = np.zeros((n, 2, 3), np.float32)
    theta[:, 0, 0], theta[:, 1, 1] = signs[:, 0] / scale, signs[:, 1] / scale
    theta[:, :, 2] = offset
    grid = F.affine_grid(torch.as_tensor(theta, device=device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # pads grey
    moved = [affine_boxes(boxes[i], scale[j] * signs[j], offset[j]) for j, i in enumerate(rows)]
    kept_labels = [labels[i][kept] for i, (_, kept) in zip(rows, moved, strict=True)]
    return channels_last(x), [b for b, _ in moved], kept_labels


@dataclass(frozen=True)
class Chunk:
    """Inference results for a chunk of n images: K candidates each (boxes, objectness, class
    probabilities), the same for T MC passes (leading axis T), and pooled features."""

    boxes: np.ndarray  # (n, K, 4)
    objectness: np.ndarray  # (n, K)
    class_probs: np.ndarray  # (n, K, C); zeros for candidates below the threshold
    sampled_boxes: np.ndarray | None = None  # (T, n, K, 4)
    sampled_objectness: np.ndarray | None = None  # (T, n, K)
    sampled_class_probs: np.ndarray | None = None  # (T, n, K, C)
    features: np.ndarray | None = None  # (n, d)


def infer(
    weights: dict[str, np.ndarray], images: Sequence[Any], *, image_size: int, n_classes: int, k: int,
    threshold: float, n_samples: int, dropout: float, seed: int, with_features: bool, device: torch.device,
    chunk_size: int,
) -> Iterator[Chunk]:
    """Run the network over ``images`` in chunks of ``chunk_size``; yield each chunk's :class:`Chunk`.

    Only candidates with objectness >= ``threshold`` are classified (a box's score is objectness x
    top class probability, so the others cannot reach the threshold). The backbone runs once per
    image; ``n_samples`` MC passes repeat the output layer, and the classifier's last layer for the
    boxes of each pass, under dropout masks drawn from a generator seeded with ``seed`` (same input,
    same samples).
    """
    generator = torch.Generator(device=device).manual_seed(int(seed))
    with torch.inference_mode():
        w = {name: channels_last(torch.from_numpy(v).to(device)) for name, v in weights.items()}
        for start in range(0, len(images), chunk_size):
            pixels = torch.from_numpy(resize_batch(images[start:start + chunk_size], image_size)).to(device)
            x = channels_last(normalise(pixels.float()))
            head, deep = network.trunk(x, w, train=False)
            found = network.decode(network.output_layer(head, w), k)
            probs = _classify(x, w, found, n_classes, threshold, 0.0, generator)
            chunk = Chunk(found.boxes, found.objectness, probs)
            if n_samples:
                stacked = head.expand(n_samples, *head.shape)
                if dropout > 0:
                    stacked = dropped(stacked, dropout, generator)
                passes = network.decode(network.output_layer(stacked, w), k)  # (T, n, k, ...)
                sampled = _classify(x, w, passes, n_classes, max(threshold, SAMPLE_MIN_SCORE), dropout, generator)
                chunk = replace(chunk, sampled_boxes=passes.boxes, sampled_objectness=passes.objectness,
                                sampled_class_probs=sampled)
            if with_features:
                features = torch.cat([deep.mean((2, 3)), head.mean((2, 3))], 1).double().cpu().numpy()
                chunk = replace(chunk, features=features)
            yield chunk


def _classify(
    x: torch.Tensor, w: dict[str, torch.Tensor], found: network.Candidates, n_classes: int, threshold: float,
    dropout: float, generator: torch.Generator,
) -> np.ndarray:
    """Class probabilities (..., n, K, C) float64 of the candidates with objectness >= ``threshold``.

    ``found`` has leading dims (n, K) or (T, n, K); the image of a candidate is its index on the
    ``n`` axis. With ``dropout`` every candidate gets its own mask on the classifier's features.
    """
    shape = found.objectness.shape
    probs = np.zeros((*shape, max(n_classes, 1)))
    if n_classes <= 1:
        probs[...] = 1.0
        return probs
    where = np.nonzero(found.objectness >= threshold)
    if where[0].size == 0:
        return probs
    image_index = torch.as_tensor(where[-2], device=x.device)
    boxes = torch.as_tensor(found.boxes[where], dtype=torch.float32, device=x.device)
    context = torch.full((len(boxes),), network.CROP_CONTEXT, dtype=torch.float32, device=x.device)
    features = network.crop_features(channels_last(network.crops(x, image_index, boxes, context)), w, train=False)
    if dropout > 0:
        features = dropped(features, dropout, generator)
    probs[where] = torch.softmax(network.class_logits(features, w).double(), dim=-1).cpu().numpy()
    return probs


def dropped(x: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout with an explicit generator (``F.dropout`` only uses the global RNG)."""
    keep = 1.0 - rate
    mask = torch.rand(x.shape, generator=generator, device=x.device) < keep
    return x * mask / keep


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """4-d tensors in NHWC memory order: oneDNN's CPU convolutions ran ~1.8x faster so (a training
    step of this network at 128 px, one thread); other tensors unchanged."""
    return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t


def normalise(x: torch.Tensor) -> torch.Tensor:
    """0-255 pixels to roughly zero mean, unit scale."""
    return (x - 127.5) / 64.0


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up over :data:`WARMUP_STEPS`, then cosine decay to 5 % of ``peak``."""
    if step < WARMUP_STEPS:
        return peak * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(total - WARMUP_STEPS, 1)
    return peak * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


def batch_bounds(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Balanced mini-batches (see :func:`model.torch_mlp.batch_bounds`), at least 2 images each when
    possible: batch norm over a single image normalises away what tells it apart."""
    return balanced_bounds(n, max(1, min(math.ceil(n / batch_size), n // 2)))

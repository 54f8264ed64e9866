"""Where torch computations run: the one place that chooses between CUDA and the CPU.

Everything torch-based in :mod:`model` asks :func:`select_device` instead of testing
``torch.cuda.is_available()`` itself, so one environment variable moves a whole deployment
(for instance a GPU box shared with other services) to the CPU without a code change.

torch is imported inside the function, not at module level: importing torch costs seconds,
and the default logistic-regression path must not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Environment variable that overrides every other choice: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``.
DEVICE_ENV_VAR = "LABELLOOP_DEVICE"
#: Environment variable: torch intra-op threads while our CPU computations run (default 1).
THREADS_ENV_VAR = "LABELLOOP_TORCH_THREADS"


def select_device(prefer: str | None = None) -> torch.device:
    """Return the torch device to compute on.

    Precedence: the ``LABELLOOP_DEVICE`` environment variable (an operator's decision about
    the machine beats what any code path asks for), then ``prefer``, then ``"auto"``: CUDA
    when available, else the CPU.

    Accepted values are ``"auto"``, ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` (case-insensitive).
    Asking explicitly for CUDA on a machine without it raises ``RuntimeError`` rather than
    silently running 10-100x slower on the CPU than the operator planned for.
    """
    import torch

    env = os.environ.get(DEVICE_ENV_VAR, "").strip().lower()
    choice = env or (prefer or "auto").strip().lower()
    source = f"{DEVICE_ENV_VAR}={env!r}" if env else f"prefer={prefer!r}"
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(choice)
    except RuntimeError:
        raise ValueError(f"unknown device {choice!r} ({source}); use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {choice!r} ({source}); use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"CUDA was requested ({source}) but torch sees no CUDA device")
    return device


@contextmanager
def cpu_threads(device: torch.device) -> Iterator[None]:
    """Run the body with torch's intra-op thread count set for our workloads, then restore it.

    On the CPU the default is 1 thread (``LABELLOOP_TORCH_THREADS`` overrides). The MLP trains
    on mini-batches of ~100 rows, where splitting each small op across threads costs more than it
    saves, and the server already runs several workers side by side: measured on a busy 2-core
    machine, one training step took 2 ms with 1 thread and 29 ms with torch's default of 2.
    The setting is restored afterwards so other torch code in the process is unaffected.
    CUDA devices are left alone.
    """
    import torch

    if device.type != "cpu":
        yield
        return
    raw = os.environ.get(THREADS_ENV_VAR, "").strip()
    try:
        wanted = int(raw) if raw else 1
    except ValueError:
        raise ValueError(f"{THREADS_ENV_VAR} must be a positive integer, got {raw!r}") from None
    if wanted < 1:
        raise ValueError(f"{THREADS_ENV_VAR} must be a positive integer, got {raw!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

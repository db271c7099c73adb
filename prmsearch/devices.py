"""The device and dtype a model loads on: the ones asked for, checked against what this machine and torch have, so
`--device cuda` on a CPU-only machine or `--dtype float8` is one line naming the flag, not a traceback from deep in
torch; or the defaults (the GPU when there is one, the checkpoint's own dtype). And how much memory is free, for the
commands that check a run fits before they start it."""

from __future__ import annotations

from typing import Any

from .errors import PrmsearchError

DTYPES = ("auto", "bfloat16", "float16", "float32")


class DeviceError(PrmsearchError):
    """A device or dtype this machine or torch cannot give."""


def pick_device(device: Any = None) -> Any:
    """`device` (a string or a `torch.device`) when this machine has it; None: cuda when available, else cpu."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"--device {device}: not a device torch knows; give cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(
                f"--device {device}: this machine has no CUDA device torch {torch.__version__} can use; give --device "
                "cpu, or leave --device out"
            )
        if parsed.index is not None and parsed.index >= count:
            raise DeviceError(f"--device {device}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return device


def pick_dtype(dtype: Any = None) -> Any:
    """The torch dtype `dtype` names (a string from a flag, or already a dtype); None or "auto": the checkpoint's."""
    import torch

    if dtype is None or dtype == "auto" or isinstance(dtype, torch.dtype):
        return None if dtype == "auto" else dtype
    if dtype not in DTYPES:
        raise DeviceError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def available_memory() -> int | None:
    """Bytes of memory free for new work (Linux's MemAvailable); None where the system does not say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def short_of_memory(need: float) -> int | None:
    """The free bytes, when `need` bytes would take more than 80% of them (the rest is the system's and the
    libraries'); None when it fits, or when the system does not say how much is free."""
    free = available_memory()
    return free if free is not None and need > 0.8 * free else None

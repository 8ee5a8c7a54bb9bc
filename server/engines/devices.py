"""Pick a device: cuda, mps or cpu, falling back to the CPU with a reason."""

from __future__ import annotations

import logging
import os

log = logging.getLogger("lingting.device")

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def usable_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cuda_count() -> int:
    try:
        import ctranslate2
        return ctranslate2.get_cuda_device_count()
    except Exception:  # a broken CUDA install must not stop a CPU server
        return 0


def resolve_device(requested: str, supports_mps: bool = False) -> tuple[str, int]:
    """Returns (device, index) for 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."""
    kind, _, index_text = requested.partition(":")
    if kind not in DEVICE_CHOICES or (index_text and not index_text.isdigit()):
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda, cuda:N or mps")
    index = int(index_text or 0)
    cuda = _cuda_count()
    if kind == "auto":
        if cuda:
            return "cuda", 0
        log.info("device auto: no CUDA device found, using the CPU")
        return "cpu", 0
    if kind == "cuda":
        if index < cuda:
            return "cuda", index
        log.warning("device %s asked for, but %d CUDA device(s) found: falling back to the CPU", requested, cuda)
        return "cpu", 0
    if kind == "mps":
        if supports_mps:
            return "mps", 0
        log.warning("device mps: this engine (CTranslate2) has no MPS backend: falling back to the CPU")
        return "cpu", 0
    return "cpu", 0

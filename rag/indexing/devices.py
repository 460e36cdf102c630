"""Where the embedding model runs (RAGBOT_DEVICE) and what that implies for precision and batches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rag.errors import ModelError

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class DeviceProfile:
    device: str
    int8: bool  # dynamic int8 Linear layers (CPU only)
    float16: bool  # half-precision weights (CUDA)
    max_batch: int  # texts per forward pass
    batch_tokens: int  # padded tokens per forward pass

    @property
    def variant(self) -> str:
        """How the vectors differ from float32 ones; part of every document's fingerprint."""
        if self.int8:
            return "int8pc"  # per-channel; "int8" was the per-tensor scheme whose vectors differ
        return "fp16" if self.float16 else ""


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(
    requested: str,
    *,
    cuda_available: Callable[[], bool] = _cuda_available,
    mps_available: Callable[[], bool] = _mps_available,
) -> str:
    """`auto` → cuda when torch sees a GPU, else cpu; an explicit device must exist (ModelError)."""
    requested = (requested or "auto").strip().lower()
    if requested not in DEVICES:
        raise ModelError(f"RAGBOT_DEVICE: unknown device {requested!r}; use one of {', '.join(DEVICES)}")
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise ModelError("RAGBOT_DEVICE=cuda, but torch sees no CUDA GPU (a CPU-only torch build?)")
    if requested == "mps" and not mps_available():
        raise ModelError("RAGBOT_DEVICE=mps, but torch's Metal backend is not available here")
    return requested


def device_profile(device: str, *, int8: bool) -> DeviceProfile:
    """CPU: int8 if enabled, batches of 8 (faster than ~35 on 2 cores); GPUs: large batches."""
    if device == "cuda":
        return DeviceProfile(device, int8=False, float16=True, max_batch=128, batch_tokens=65536)
    if device == "mps":
        return DeviceProfile(device, int8=False, float16=False, max_batch=64, batch_tokens=32768)
    return DeviceProfile(device, int8=int8, float16=False, max_batch=CPU_MAX_BATCH, batch_tokens=8192)


#: Measured on the 2-core machine (benchmarks/embedding_speed.py): see docs/retrieval.md.
CPU_MAX_BATCH = 8

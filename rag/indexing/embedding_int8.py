"""Int8 quantisation of an embedding model for CPUs (RAGBOT_EMB_INT8).

This module owns `quantize_linear`, the one int8 scheme ragbot uses: dynamic int8 Linear layers
with per-channel weight scales, chosen by measured agreement with the float32 vectors. Which
devices get it, and the vector variant that ingest fingerprints record, are decided in
`rag.indexing.devices`; torch is imported inside the function.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def quantize_linear(model: Any) -> Any:
    """Dynamic int8 Linear layers with per-channel weight scales; down-projections stay float32.

    Measured on ragbot's own code chunks (MiniLM, mean cosine to the float32 vectors): one
    scale per matrix 0.901, one per output channel 0.974, and per-channel with the feed-forward
    down-projections (in_features > out_features: they read the GELU outputs, whose outliers
    one activation scale per batch cannot hold) kept float32 0.989 (docs/retrieval.md). Where
    torch lacks the eager quantisation API, the float32 model is kept.
    """
    import warnings

    import torch

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig

        spec = {
            name: per_channel_dynamic_qconfig
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and module.in_features <= module.out_features
        }
        with warnings.catch_warnings():
            # torch announces the eager quantisation API's future removal on every call; a
            # user-facing command must not print that (the float32 fallback covers its removal).
            warnings.filterwarnings("ignore", message=r".*(torch\.ao\.quantization|quantized tensor).*")
            return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
    except (AttributeError, ImportError, RuntimeError, NotImplementedError) as e:
        log.warning("int8 quantisation unavailable (%s); using float32", e)
        return model

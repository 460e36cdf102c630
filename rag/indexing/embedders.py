"""Which embedder a model setting names: `litellm:<provider>/<model>` is a hosted model
(rag.indexing.embedding_provider), anything else a local one (rag.indexing.embedding)."""

from __future__ import annotations

from collections.abc import Callable

from rag.config import Settings
from rag.indexing.embedding import Embedder, local_embedder_factory
from rag.indexing.embedding_provider import ProviderEmbedder
from rag.indexing.provider import PREFIX, Endpoint, is_provider_model


def embedder_factory(settings: Settings) -> Callable[[str | None], Embedder]:
    """Builds the embedder for a model setting (None: the bundled default)."""
    local = local_embedder_factory(settings)

    def build(model: str | None) -> Embedder:
        if model is None or not is_provider_model(model):
            return local(model)
        base, key, base_variable, key_variable = settings.embedding_endpoint()
        variables = [
            name
            for name, value in (
                ("LOCAL_EMB_MODEL", settings.local_emb_model),
                ("CODE_EMB_MODEL", settings.code_emb_model),
            )
            if value == model
        ]
        endpoint = Endpoint(
            model=model[len(PREFIX) :],
            api_base=base,
            api_key=key,
            timeout=settings.embedding_timeout,
            max_retries=settings.embedding_max_retries,
            model_variable=" / ".join(variables) or "CODE_EMB_MODEL",
            base_variable=base_variable,
            key_variable=key_variable,
        )
        return ProviderEmbedder(
            endpoint,
            concurrency=settings.embedding_concurrency,
            batch_size=settings.embedding_batch_size,
            batch_tokens=settings.embedding_batch_tokens,
            max_tokens=max(512, settings.chunk_size or 0),
        )

    return build

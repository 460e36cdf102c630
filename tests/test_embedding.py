"""Embedders: the bundled MiniLM offline, batching by length, CodeT5's encoder path, load errors."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest

from rag.errors import ModelError
from rag.indexing.embedding import EmbedderPool, TransformersEmbedder, bundled_model_dir

OFFICIAL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_bundled_model_is_the_official_minilm() -> None:
    digest = hashlib.sha256((bundled_model_dir() / "model.safetensors").read_bytes()).hexdigest()
    assert digest == OFFICIAL_SHA256


def test_minilm_vectors_are_normalised_and_semantic(embedders: EmbedderPool) -> None:
    e = embedders.get(None)
    vecs = e.embed_documents(
        ["How do I deploy the API?", "Deploying the service to production", "banana bread"]
    )
    assert all(len(v) == 384 for v in vecs)
    assert all(math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vecs)
    assert cosine(vecs[0], vecs[1]) > cosine(vecs[0], vecs[2]) + 0.2
    assert e.token_limit() == 256


def test_batching_by_length_keeps_order_and_padding_does_not_change_vectors(embedders: EmbedderPool) -> None:
    e = embedders.get(None)
    texts = ["short", "a much longer text " * 30, "medium length text here", "x"]
    together = e.embed_documents(texts, batch_tokens=64)
    alone = [e.embed_batch([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert cosine(a, b) > 0.9999


def make_tiny_t5(path: Path) -> Path:
    """A randomly initialised T5 with a real tokenizer, saved like a hub checkpoint."""
    import torch
    from transformers import BertTokenizerFast, T5Config, T5ForConditionalGeneration

    tok = BertTokenizerFast.from_pretrained(bundled_model_dir())
    config = T5Config(
        vocab_size=tok.vocab_size,
        d_model=32,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        d_kv=16,
        decoder_start_token_id=0,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_codet5_style_encoder_decoder_runs_through_its_encoder_mean_pooled(tmp_path: Path) -> None:
    import torch
    from transformers import T5EncoderModel

    path = make_tiny_t5(tmp_path / "tiny-t5")
    e = TransformersEmbedder(str(path))
    texts = ["def add(a, b): return a + b", "SELECT * FROM users"]
    vecs = e.embed_documents(texts)
    assert len(vecs) == 2 and all(len(v) == 32 for v in vecs)
    # The same numbers computed by hand from the encoder: mean over real tokens, L2-normalised.
    enc = T5EncoderModel.from_pretrained(path).eval()
    batch = e._tokenizer(texts[:1], return_tensors="pt")
    with torch.inference_mode():
        hidden = enc(**batch).last_hidden_state[0]
    expected = torch.nn.functional.normalize(hidden.mean(dim=0), dim=0).tolist()
    assert cosine(vecs[0], expected) > 0.9999


def test_full_t5_model_would_raise_without_decoder_inputs(tmp_path: Path) -> None:
    # The original backend's defect: AutoModel on an encoder-decoder, called with input_ids only.
    from transformers import AutoModel

    path = make_tiny_t5(tmp_path / "tiny-t5")
    model = AutoModel.from_pretrained(path)
    import torch

    with pytest.raises(ValueError):
        model(input_ids=torch.tensor([[5, 6, 7]]))


def test_missing_model_is_one_clear_error(tmp_path: Path) -> None:
    e = TransformersEmbedder("no-such-org/no-such-model")
    with pytest.raises(ModelError, match="no-such-org/no-such-model"):
        e.embed_query("hello")
    broken = tmp_path / "broken-model"
    broken.mkdir()
    with pytest.raises(ModelError, match="broken-model"):
        TransformersEmbedder(str(broken)).embed_query("hello")


def test_collection_key_differs_per_model() -> None:
    assert TransformersEmbedder(None).key != TransformersEmbedder("Salesforce/codet5-base").key
    assert TransformersEmbedder(None).key.startswith("all-minilm-l6-v2-")

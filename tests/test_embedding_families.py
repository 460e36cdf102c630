"""Each model family's pooling, checked on tiny random models saved with the real file layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import ModelError
from rag.indexing.embedding import TransformersEmbedder
from rag.indexing.embedding_families import CODERANK_QUERY_PREFIX

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *[f"w{i}" for i in range(60)], "def", "return", "x"]


def _bert_tokenizer(directory: Path) -> None:
    from transformers import BertTokenizerFast

    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"))
    tokenizer.save_pretrained(directory)


def _bert(directory: Path, *, pooling: str | None = None, prompts: dict[str, str] | None = None) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(directory)
    _bert_tokenizer(directory)
    if pooling:
        (directory / "1_Pooling").mkdir()
        (directory / "1_Pooling" / "config.json").write_text(
            json.dumps({"word_embedding_dimension": 16, f"pooling_mode_{pooling}": True})
        )
    if prompts:
        (directory / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    return directory


def _reference(model_dir: Path, text: str, *, cls: bool) -> list[float]:
    """The expected vector, computed directly from the saved weights."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tok([text], return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state[0]
    vector = hidden[0] if cls else hidden.mean(dim=0)
    return torch.nn.functional.normalize(vector, dim=0).tolist()


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-5


def test_mean_pooled_encoder(tmp_path: Path) -> None:
    model_dir = _bert(tmp_path / "mean", pooling="mean_tokens")
    embedder = TransformersEmbedder(str(model_dir))
    assert embedder.family == "mean"
    vector = embedder.embed_batch(["def w1 w2 return x"])[0]
    assert _close(vector, _reference(model_dir, "def w1 w2 return x", cls=False))
    assert not _close(vector, _reference(model_dir, "def w1 w2 return x", cls=True))


def test_cls_pooled_encoder_with_query_prompt_like_coderankembed(tmp_path: Path) -> None:
    model_dir = _bert(tmp_path / "CodeRankEmbed", pooling="cls_token", prompts={"query": "w7 w8 "})
    embedder = TransformersEmbedder(str(model_dir))
    assert embedder.family == "cls"
    assert _close(embedder.embed_batch(["w1 w2 x"])[0], _reference(model_dir, "w1 w2 x", cls=True))
    # Queries get the model's query prompt; documents do not.
    assert _close(embedder.embed_query("w1 w2 x"), _reference(model_dir, "w7 w8 w1 w2 x", cls=True))


def test_coderankembed_prefix_is_known_by_name_when_the_prompt_file_is_absent(tmp_path: Path) -> None:
    model_dir = _bert(tmp_path / "nomic-ai" / "CodeRankEmbed", pooling="cls_token")
    embedder = TransformersEmbedder(str(model_dir))
    embedder.token_limit()
    assert embedder.query_prefix == CODERANK_QUERY_PREFIX


def test_model_needing_hub_code_is_refused_without_the_opt_in(tmp_path: Path) -> None:
    model_dir = _bert(tmp_path / "custom", pooling="cls_token")
    config = json.loads((model_dir / "config.json").read_text())
    config.update(model_type="acme_bert", auto_map={"AutoModel": "acme/x--modeling.AcmeBertModel"})
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="RAGBOT_TRUST_REMOTE_CODE"):
        TransformersEmbedder(str(model_dir)).token_limit()


def _t5_config_dict() -> dict[str, object]:
    return dict(
        vocab_size=len(VOCAB),
        d_model=16,
        d_kv=8,
        d_ff=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        feed_forward_proj="relu",
        pad_token_id=0,
        eos_token_id=3,
        decoder_start_token_id=0,
    )


def test_codet5_encoder_decoder_is_mean_pooled_over_its_encoder(tmp_path: Path) -> None:
    import torch
    from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration

    model_dir = tmp_path / "codet5"
    torch.manual_seed(0)
    T5ForConditionalGeneration(T5Config(**_t5_config_dict())).save_pretrained(model_dir)  # type: ignore[arg-type]
    _bert_tokenizer(model_dir)
    embedder = TransformersEmbedder(str(model_dir))
    assert embedder.family == "t5-encoder-mean"
    tok_batch = embedder._load_tokenizer()(["w3 w4 x"], return_tensors="pt")
    encoder = T5EncoderModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        hidden = encoder(input_ids=tok_batch["input_ids"]).last_hidden_state[0]
    expected = torch.nn.functional.normalize(hidden.mean(dim=0), dim=0).tolist()
    assert _close(embedder.embed_batch(["w3 w4 x"])[0], expected)


def test_codet5p_embedding_takes_the_first_token_through_the_projection(tmp_path: Path) -> None:
    """Same files as Salesforce/codet5p-110m-embedding: remote-code config, encoder + `proj` weights."""
    import torch
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    model_dir = tmp_path / "codet5p-110m-embedding"
    model_dir.mkdir()
    torch.manual_seed(0)
    encoder = T5EncoderModel(T5Config(**_t5_config_dict(), is_encoder_decoder=False)).eval()  # type: ignore[arg-type]
    proj = torch.nn.Linear(16, 8)
    state = {k: v.contiguous() for k, v in encoder.state_dict().items() if k != "encoder.embed_tokens.weight"}
    state.update({"proj.weight": proj.weight.detach(), "proj.bias": proj.bias.detach()})
    save_file(state, str(model_dir / "model.safetensors"))
    config = {
        **_t5_config_dict(),
        "embed_dim": 8,
        "model_type": "codet5p_embedding",
        "architectures": ["CodeT5pEmbeddingModel"],
        "auto_map": {"AutoModel": "modeling_codet5p_embedding.CodeT5pEmbeddingModel"},
    }
    (model_dir / "config.json").write_text(json.dumps(config))
    _bert_tokenizer(model_dir)

    embedder = TransformersEmbedder(str(model_dir))  # no trust_remote_code needed
    assert embedder.family == "codet5p-embedding"
    vector = embedder.embed_batch(["w5 w6 def x"])[0]
    batch = embedder._load_tokenizer()(["w5 w6 def x"], return_tensors="pt")
    with torch.no_grad():
        first = encoder(input_ids=batch["input_ids"]).last_hidden_state[0, 0]
        expected = torch.nn.functional.normalize(proj(first), dim=0).tolist()
    assert len(vector) == 8
    assert _close(vector, expected)


def test_query_embeddings_are_cached(tmp_path: Path) -> None:
    embedder = TransformersEmbedder(str(_bert(tmp_path / "m", pooling="mean_tokens")))
    calls: list[int] = []
    original = embedder.embed_batch

    def counting(texts):  # type: ignore[no-untyped-def]
        calls.append(len(texts))
        return original(texts)

    embedder.embed_batch = counting  # type: ignore[method-assign]
    first = embedder.embed_query("w1 w2")
    assert embedder.embed_query("w1 w2") == first
    embedder.embed_query("w3")
    assert calls == [1, 1]


def test_coderankembed_layout_loads_into_native_nomic_bert_with_cls_pooling(tmp_path: Path) -> None:
    """nomic-ai/CodeRankEmbed's files: Nomic's own config names and weight names, CLS pooling."""
    import torch
    from safetensors.torch import save_file
    from transformers import NomicBertConfig, NomicBertModel

    torch.manual_seed(0)
    native = NomicBertModel(
        NomicBertConfig(
            vocab_size=len(VOCAB),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=64,
            rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        )
    ).eval()
    renames = [
        ("layers.", "encoder.layers."),
        ("embeddings.LayerNorm", "emb_ln"),
        ("self_attn.o_proj", "attn.out_proj"),
        ("mlp.up_proj", "mlp.fc11"),
        ("mlp.gate_proj", "mlp.fc12"),
        ("mlp.down_proj", "mlp.fc2"),
        ("post_attention_layernorm", "norm1"),
        ("post_mlp_layernorm", "norm2"),
    ]
    state: dict[str, torch.Tensor] = {}
    native_state = native.state_dict()
    for key, value in native_state.items():
        if ".self_attn." in key and key.split(".self_attn.")[1].split(".")[0] in (
            "q_proj",
            "k_proj",
            "v_proj",
        ):
            continue
        new = key
        for old, replacement in renames:
            new = new.replace(old, replacement)
        state[new] = value.contiguous()
    for i in range(1):
        for kind in ("weight", "bias"):
            parts = [
                native_state.get(f"layers.{i}.self_attn.{p}.{kind}") for p in ("q_proj", "k_proj", "v_proj")
            ]
            if all(p is not None for p in parts):
                state[f"encoder.layers.{i}.attn.Wqkv.{kind}"] = torch.cat(parts, dim=0)  # type: ignore[arg-type]
    model_dir = tmp_path / "CodeRankEmbed"
    model_dir.mkdir()
    save_file(state, str(model_dir / "model.safetensors"))
    (model_dir / "config.json").write_text(
        json.dumps(
            {
                "model_type": "nomic_bert",
                "architectures": ["NomicBertModel"],
                "auto_map": {"AutoModel": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertModel"},
                "n_embd": 16,
                "n_layer": 1,
                "n_head": 2,
                "n_inner": 32,
                "n_positions": 64,
                "vocab_size": len(VOCAB),
                "rotary_emb_base": 1000,
                "rotary_emb_fraction": 1.0,
                "activation_function": "swiglu",
                "layer_norm_epsilon": 1e-12,
                "type_vocab_size": 2,
            }
        )
    )
    _bert_tokenizer(model_dir)
    (model_dir / "1_Pooling").mkdir()
    (model_dir / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))

    embedder = TransformersEmbedder(str(model_dir))  # no remote code: transformers' own NomicBERT
    assert embedder.family == "cls"
    batch = embedder._load_tokenizer()([CODERANK_QUERY_PREFIX + "w1 w2"], return_tensors="pt")
    with torch.no_grad():
        cls = native(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state[
            0, 0
        ]
    expected = torch.nn.functional.normalize(cls, dim=0).tolist()
    assert embedder.query_prefix == CODERANK_QUERY_PREFIX
    assert _close(embedder.embed_query("w1 w2"), expected)

"""Embedding model families: how each kind of checkpoint is recognised, loaded and pooled.

This module owns everything that differs between model families (see `detect_family`): reading a
model's JSON files, mapping its config onto transformers' own classes (NomicBERT for
CodeRankEmbed, T5 for CodeT5+) so that no code from the model hub runs, building the model and
its output projection, the query prefix and token limit a model declares, and turning the last
hidden states into one L2-normalised sentence vector per text (`pool`). `TransformersEmbedder`
in `rag.indexing.embedding` drives it; torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ModelError

if TYPE_CHECKING:
    import torch

CODERANK_QUERY_PREFIX = "Represent this query for searching relevant code: "


def detect_family(config: dict[str, Any], pooling: dict[str, Any]) -> tuple[str, bool]:
    """(family, needs remote code) from config.json and the sentence-transformers pooling config."""
    architectures = config.get("architectures") or []
    model_type = str(config.get("model_type", ""))
    if model_type == "codet5p_embedding" or "CodeT5pEmbeddingModel" in architectures:
        return "codet5p-embedding", False
    if config.get("is_encoder_decoder") or model_type in ("t5", "mt5", "umt5"):
        return "t5-encoder-mean", False
    family = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return family, model_type not in CONFIG_MAPPING


def config_for(location: str, raw: dict[str, Any], family: str, *, trust_remote_code: bool) -> Any:
    """The model's transformers config; Nomic and CodeT5+ configs are mapped onto native classes."""
    if family == "codet5p-embedding":
        return _t5_config(raw)
    if raw.get("model_type") == "nomic_bert" and "n_embd" in raw:
        return _nomic_config(raw)
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(location, trust_remote_code=trust_remote_code)


def _t5_config(raw: dict[str, Any]) -> Any:
    import transformers

    fields = {
        k: v for k, v in raw.items() if k not in ("architectures", "auto_map", "model_type", "embed_dim")
    }
    fields["is_encoder_decoder"] = False
    fields["use_cache"] = False
    return transformers.T5Config(**fields)


#: Nomic's own config names (CodeRankEmbed, nomic-embed-*) → transformers' native NomicBertConfig.
_NOMIC_NAMES = {
    "n_embd": "hidden_size",
    "n_layer": "num_hidden_layers",
    "n_head": "num_attention_heads",
    "n_inner": "intermediate_size",
    "n_positions": "max_position_embeddings",
    "layer_norm_epsilon": "layer_norm_eps",
    "vocab_size": "vocab_size",
    "type_vocab_size": "type_vocab_size",
    "pad_token_id": "pad_token_id",
}


def _nomic_config(raw: dict[str, Any]) -> Any:
    """CodeRankEmbed's config in transformers' native NomicBERT terms, so no hub code is needed."""
    from transformers import NomicBertConfig

    fields = {new: raw[old] for old, new in _NOMIC_NAMES.items() if raw.get(old) is not None}
    if raw.get("rotary_emb_base"):
        fields["rope_parameters"] = {"rope_type": "default", "rope_theta": float(raw["rotary_emb_base"])}
    return NomicBertConfig(**fields)


def read_model_json(location: str, filename: str) -> dict[str, Any]:
    """A JSON file of the model (local directory or hub cache); {} when it has none."""
    from transformers.utils import cached_file

    try:
        path = cached_file(location, filename, _raise_exceptions_for_missing_entries=False)
    except OSError:
        path = None
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def query_prefix_for(location: str, name: str) -> str:
    """What the model wants before a query: its sentence-transformers prompt, or known by name."""
    prompts = read_model_json(location, "config_sentence_transformers.json").get("prompts") or {}
    if isinstance(prompts, dict) and isinstance(prompts.get("query"), str):
        return str(prompts["query"])
    if "coderankembed" in name.lower():
        return CODERANK_QUERY_PREFIX
    return ""


def token_limit_for(location: str, config: Any, tokenizer: Any) -> int:
    """Longest input in tokens: the least of 512 and what the model's files declare."""
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


def build_model(location: str, family: str, config: Any, *, trust_remote_code: bool) -> tuple[Any, Any]:
    """The family's model and its output projection (None where it has none), as loaded from disk."""
    import transformers

    if family == "codet5p-embedding":
        return load_codet5p_embedding(location)
    if family == "t5-encoder-mean":
        return transformers.T5EncoderModel.from_pretrained(location), None
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if config is not None and getattr(config, "model_type", "") == "nomic_bert":
        kwargs["config"] = config  # native NomicBERT; weights renamed on load by transformers
    return transformers.AutoModel.from_pretrained(location, **kwargs), None


def load_codet5p_embedding(location: str) -> tuple[Any, Any]:
    """CodeT5+ embedding weights in transformers' T5EncoderModel + a Linear projection (no hub code)."""
    import torch
    import transformers

    raw = read_model_json(location, "config.json")
    config = _t5_config(raw)
    encoder = transformers.T5EncoderModel(config)
    state = _load_state_dict(location)
    projection = torch.nn.Linear(config.d_model, int(raw.get("embed_dim", 256)))
    projection.load_state_dict({"weight": state.pop("proj.weight"), "bias": state.pop("proj.bias")})
    if "encoder.embed_tokens.weight" not in state and "shared.weight" in state:
        state["encoder.embed_tokens.weight"] = state["shared.weight"]
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("embed_tokens.weight")]
    if missing or unexpected:
        raise ModelError(
            f"{location}: not a CodeT5+ embedding checkpoint "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    projection.eval()
    return encoder, projection


def _load_state_dict(location: str) -> dict[str, Any]:
    from transformers.utils import cached_file

    safetensors = cached_file(location, "model.safetensors", _raise_exceptions_for_missing_entries=False)
    if safetensors:
        from safetensors.torch import load_file

        return dict(load_file(safetensors))
    import torch

    binary = cached_file(location, "pytorch_model.bin")
    if binary is None:
        raise ModelError(f"{location}: no model.safetensors or pytorch_model.bin")
    return dict(torch.load(binary, map_location="cpu", weights_only=True))


def pool(family: str, hidden: torch.Tensor, mask: torch.Tensor, projection: Any = None) -> torch.Tensor:
    """The family's sentence vector from the last hidden states, L2-normalised."""
    import torch

    first_token = family in ("cls", "codet5p-embedding")
    vectors = hidden[:, 0] if first_token else mean_pool(hidden, mask)
    if projection is not None:
        vectors = projection(vectors)
    return torch.nn.functional.normalize(vectors, p=2, dim=1)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states that the attention mask keeps (padding excluded)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1e-9)

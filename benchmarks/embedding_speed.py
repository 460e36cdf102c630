"""Document-embedding throughput and fidelity of the bundled model: int8 schemes, batch sizes.

Embeds real code chunks (ragbot's own modules through its syntax-aware chunker, or the
contextual-code chunks with --dataset) with each variant, after one warm-up batch; prints one
JSON line per variant: chunks/s (median of --runs, variants alternated run by run), and the
mean and minimum cosine of its vectors to the float32 model's vectors of the same texts.

With --onnx it also times onnxruntime (a dependency of chromadb) on the same texts, batches and
pooling: the model exported by torch.onnx and quantised by onnxruntime.quantization (float32,
per-channel int8, per-tensor int8). The export needs the `onnx` package, which ragbot does not
depend on: `pip install onnx` first.

    PYTHONPATH=. python benchmarks/embedding_speed.py [--runs 3] [--limit 200] [--dataset] [--onnx]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rag.indexing.chunking import SyntaxChunker
from rag.indexing.embedding import Embedder, TransformersEmbedder
from rag.indexing.embedding_families import mean_pool
from rag.indexing.embedding_int8 import quantize_linear
from rag.models import Document

ROOT = Path(__file__).resolve().parent.parent


def ragbot_chunks(embedder: TransformersEmbedder) -> list[str]:
    chunker = SyntaxChunker(
        count_tokens=embedder.count_tokens, chunk_tokens=256, overlap_tokens=25, max_tokens=256
    )
    texts: list[str] = []
    for path in sorted((ROOT / "rag").rglob("*.py")):
        doc = Document(
            source="code", doc_id=path.name, title=path.name, text=path.read_text(), path=path.name
        )
        texts += [c.embed_text for c in chunker.chunk(doc)]
    return texts


def per_tensor(model: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def per_channel_all(model: Any) -> Any:
    from torch.ao.quantization import per_channel_dynamic_qconfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


class OnnxEmbedder(Embedder):
    """onnxruntime over an exported copy of the model; batching (the base class) and pooling as ragbot's."""

    def __init__(self, path: Path, base: TransformersEmbedder, max_batch: int = 8) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = base._tokenizer
        self.name = f"{base.name} (onnxruntime)"
        self.max_tokens = base.max_tokens
        self.max_batch = max_batch

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np"
        )
        feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        hidden = torch.from_numpy(self.session.run(None, feeds)[0])
        pooled = mean_pool(hidden, torch.from_numpy(enc["attention_mask"]))
        return torch.nn.functional.normalize(pooled, dim=1).tolist()


def onnx_models(exact: TransformersEmbedder, directory: Path) -> dict[str, Path]:
    """The float32 export and its two int8 quantisations (onnxruntime.quantization)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    class Encoder(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    fp32 = directory / "model.onnx"
    sample = exact._tokenizer(["def f(): pass", "a longer sample text"], padding=True, return_tensors="pt")
    dynamic = {"input_ids": {0: "b", 1: "s"}, "attention_mask": {0: "b", 1: "s"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(exact._model).eval(),
            (sample["input_ids"], sample["attention_mask"]),
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["last_hidden_state"],
            dynamic_axes={**dynamic, "last_hidden_state": {0: "b", 1: "s"}},
            opset_version=17,
            dynamo=False,
        )
    paths = {"onnxruntime float32": fp32}
    for name, per_channel in (("per-channel", True), ("per-tensor", False)):
        path = directory / f"model-int8-{name}.onnx"
        quantize_dynamic(str(fp32), str(path), per_channel=per_channel, weight_type=QuantType.QInt8)
        paths[f"onnxruntime int8 {name}"] = path
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit", type=int, default=200, help="embed N chunks (spread over the set)")
    parser.add_argument("--dataset", action="store_true", help="the contextual-code chunks instead")
    parser.add_argument("--onnx", action="store_true", help="also onnxruntime (needs `pip install onnx`)")
    args = parser.parse_args()

    exact = TransformersEmbedder(device="cpu", quantize=False)
    exact.load()
    if args.dataset:
        from rag.evaluation import given_chunks, load_dataset

        chunks, _ = given_chunks(load_dataset(ROOT / "benchmarks" / "data" / "contextual-code"))
        texts = [c.embed_text for c in chunks]
    else:
        texts = ragbot_chunks(exact)
    step = max(1, len(texts) // args.limit)
    texts = texts[::step][: args.limit]

    def variant(quantizer: Any, max_batch: int) -> TransformersEmbedder:
        e = TransformersEmbedder(device="cpu", quantize=False)
        e.load()
        if quantizer is not None:
            e._model = quantizer(copy.deepcopy(exact._model))
        e.max_batch = max_batch
        return e

    variants: dict[str, Any] = {
        "float32, batches <= 8": variant(None, 8),
        "float32, batches <= 32": variant(None, 32),
        "int8 per-tensor (before), batches <= 8": variant(per_tensor, 8),
        "int8 per-channel, all Linear, batches <= 8": variant(per_channel_all, 8),
        "int8 per-channel, down-proj float32 (default), batches <= 8": variant(quantize_linear, 8),
        "int8 per-channel, down-proj float32 (default), batches <= 16": variant(quantize_linear, 16),
        "int8 per-channel, down-proj float32 (default), batches <= 32": variant(quantize_linear, 32),
    }
    if args.onnx:
        import logging
        import tempfile

        logging.getLogger().setLevel(logging.ERROR)  # onnxruntime.quantization's advice lines
        directory = Path(tempfile.mkdtemp(prefix="ragbot-onnx-"))
        for name, path in onnx_models(exact, directory).items():
            variants[f"{name}, batches <= 8"] = OnnxEmbedder(path, exact)
    reference = np.array(exact.embed_documents(texts))
    rates: dict[str, list[float]] = {name: [] for name in variants}
    vectors: dict[str, np.ndarray] = {}
    for e in variants.values():
        e.embed_documents(texts[:8])  # warm-up
    for run in range(args.runs):
        names = list(variants) if run % 2 == 0 else list(reversed(variants))
        for name in names:
            t0 = time.perf_counter()
            out = variants[name].embed_documents(texts)
            rates[name].append(len(texts) / (time.perf_counter() - t0))
            vectors[name] = np.array(out)
    for name in variants:
        cos = (vectors[name] * reference).sum(axis=1)
        print(
            json.dumps(
                {
                    "variant": name,
                    "chunks": len(texts),
                    "threads": torch.get_num_threads(),
                    "chunks_per_s": round(statistics.median(rates[name]), 1),
                    "runs": [round(r, 1) for r in rates[name]],
                    "cosine_mean": round(float(cos.mean()), 4),
                    "cosine_min": round(float(cos.min()), 4),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()

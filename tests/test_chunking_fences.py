"""Markdown chunks keep a fenced code block whole where it fits, and never cut inside a code line."""

from __future__ import annotations

import re
from collections.abc import Sequence

from rag.indexing.chunking import LineChunker
from rag.models import Document
from rag.sources.confluence_markup import storage_to_markdown


def word_tokens(texts: Sequence[str]) -> list[int]:
    """A deterministic stand-in for the model's tokenizer: words and punctuation."""
    return [len(re.findall(r"\w+|[^\w\s]", t)) for t in texts]


def chunker(limit: int, overlap: int = 0) -> LineChunker:
    return LineChunker(
        count_tokens=word_tokens, chunk_tokens=limit, overlap_tokens=overlap, max_tokens=10_000
    )


def page(text: str) -> Document:
    return Document(source="confluence", doc_id="1", title="Runbook", text=text, language="markdown")


CODE = [f"kubectl rollout restart deploy/api-{i} --namespace prod" for i in range(6)]
BLOCK = ["```bash", *CODE, "```"]
PROSE = [f"Step {i}: check the dashboard for service {i} before you go on." for i in range(5)]


def holding(chunks: list[str], line: str) -> list[str]:
    return [c for c in chunks if line in c.split("\n")]


def test_a_fenced_block_that_fits_is_never_cut_in_two() -> None:
    text = "\n".join(["# Deploy", *PROSE, *BLOCK, *PROSE]) + "\n"
    block_tokens = sum(word_tokens([line + "\n" for line in BLOCK]))
    limit = block_tokens + 30  # room for the block, not for the block and all the prose around it
    chunks = [c.text for c in chunker(limit).chunk(page(text))]
    assert len(chunks) >= 3
    whole = "\n".join(BLOCK)
    assert [c for c in chunks if whole in c] == holding(chunks, CODE[0])  # one chunk, all of it
    assert all(whole in c for c in chunks if "```bash" in c or CODE[-1] in c)


def test_the_same_text_as_plain_lines_would_have_been_cut_inside_the_block() -> None:
    """The baseline: the line packer alone (not Markdown) splits the block, so the test above bites."""
    text = "\n".join(["# Deploy", *PROSE, *BLOCK, *PROSE]) + "\n"
    block_tokens = sum(word_tokens([line + "\n" for line in BLOCK]))
    plain = Document(source="code", doc_id="x", title="x", text=text, path="x.txt", language="text")
    chunks = [c.text for c in chunker(block_tokens + 30).chunk(plain)]
    assert not any("\n".join(BLOCK) in c for c in chunks)


def test_a_block_longer_than_a_chunk_is_split_between_lines_only() -> None:
    long_code = [f"    result_{i} = transform(result_{i - 1}, factor={i})  # step {i}" for i in range(1, 60)]
    text = "\n".join(["# Script", "Run this:", "```python", *long_code, "```", "Done."]) + "\n"
    chunks = [c.text for c in chunker(120).chunk(page(text))]
    assert len(chunks) > 3
    source_lines = set(text.split("\n"))
    for chunk in chunks:
        assert all(line in source_lines for line in chunk.split("\n")), chunk
    for line in long_code:
        assert holding(chunks, line), line


def test_overlap_never_repeats_the_tail_of_a_block_kept_whole() -> None:
    text = "\n".join(["# Deploy", *PROSE, *BLOCK, *PROSE, *PROSE]) + "\n"
    block_tokens = sum(word_tokens([line + "\n" for line in BLOCK]))
    chunks = [c.text for c in chunker(block_tokens + 30, overlap=40).chunk(page(text))]
    with_code = [c for c in chunks if any(line in c.split("\n") for line in CODE)]
    assert len(with_code) == 1 and "\n".join(BLOCK) in with_code[0]


def test_a_converted_page_keeps_its_code_macro_whole_in_one_chunk() -> None:
    code = "\n".join(CODE)
    body = (
        "<h1>Deploy</h1>" + "".join(f"<p>{p}</p>" for p in PROSE) + '<ac:structured-macro ac:name="code-pro">'
        '<ac:parameter ac:name="language">bash</ac:parameter>'
        f"<ac:plain-text-body><![CDATA[{code}]]></ac:plain-text-body></ac:structured-macro>"
        + "".join(f"<p>{p}</p>" for p in PROSE)
    )
    text = storage_to_markdown(body)
    chunks = [
        c.text for c in chunker(sum(word_tokens([line + "\n" for line in BLOCK])) + 30).chunk(page(text))
    ]
    assert len(chunks) >= 2
    assert len([c for c in chunks if "```bash\n" + code + "\n```" in c]) == 1
    assert len(holding(chunks, CODE[0])) == 1

"""Reading Confluence storage format: parsing a page body and naming the elements in it.

Storage format is XHTML with `ac:`/`ri:` elements and HTML entities, but no namespace
declarations: `parse_storage` declares the prefixes a body uses, turns HTML's named entities
into character references and falls back to lxml's recovering parser for malformed pages.
`StorageReader`, the base of the renderer, names elements as `prefix:local`, reads their
attributes and macro parameters, tells blocks from inline elements, and holds the
whitespace rules every part of the conversion shares. A change here that alters any
page's text needs a new `CONVERTER_VERSION` in `confluence_markup`.
"""

from __future__ import annotations

import html.entities
import re
from dataclasses import dataclass
from typing import Any

# Storage format declares no namespaces; these are the URIs Confluence itself uses.
KNOWN_NAMESPACES = {
    "ac": "http://atlassian.com/content",
    "ri": "http://atlassian.com/resource/identifier",
    "at": "http://atlassian.com/template",
}
XML_ENTITIES = {"amp", "lt", "gt", "quot", "apos"}
PREFIX_RE = re.compile(r"</?([A-Za-z][\w.-]*):[\w.-]+|\s([A-Za-z][\w.-]*):[\w.-]+\s*=")
CDATA_RE = re.compile(r"(<!\[CDATA\[.*?\]\]>)", re.S)
ENTITY_RE = re.compile(r"&([A-Za-z][A-Za-z0-9]*);")

BLOCK_TAGS = {
    "p",
    "div",
    "section",
    "article",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "table",
    "pre",
    "blockquote",
    "hr",
    "dl",
    "ac:layout",
    "ac:layout-section",
    "ac:layout-cell",
    "ac:task-list",
    "ac:rich-text-body",
    "ac:adf-extension",
    "ac:adf-node",
    "ac:adf-content",
}
# Macros that sit inside a line of text rather than forming a block of their own.
INLINE_MACROS = {"status", "jira", "anchor", "emoticon", "mention", "cheese", "view-file"}


@dataclass(frozen=True)
class ParsedStorage:
    root: Any
    prefixes: dict[str, str]  # namespace URI → prefix


def declare_namespaces(xhtml: str) -> dict[str, str]:
    prefixes: dict[str, str] = {}
    for match in PREFIX_RE.finditer(xhtml):
        prefix = match.group(1) or match.group(2)
        if prefix and prefix not in {"xml", "xmlns"}:
            prefixes[prefix] = KNOWN_NAMESPACES.get(prefix, f"urn:confluence-storage:{prefix}")
    for prefix, uri in KNOWN_NAMESPACES.items():
        prefixes.setdefault(prefix, uri)
    return prefixes


def numeric_entities(xhtml: str) -> str:
    """HTML named entities (&nbsp; &rsquo; …) are not XML: turn them into character references."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in XML_ENTITIES:
            return match.group(0)
        codepoint = html.entities.name2codepoint.get(name)
        return f"&#{codepoint};" if codepoint is not None else f"&amp;{name};"

    # Not inside CDATA: `&copy;` in an HTML code sample is the code itself.
    parts = CDATA_RE.split(xhtml)
    return "".join(part if part.startswith("<![CDATA[") else ENTITY_RE.sub(replace, part) for part in parts)


def parse_storage(xhtml: str) -> ParsedStorage:
    """Parse a storage-format fragment; strict XML first, lxml's recovering parser if that fails."""
    from lxml import etree

    namespaces = declare_namespaces(xhtml)
    declarations = " ".join(f'xmlns:{p}="{uri}"' for p, uri in sorted(namespaces.items()))
    document = f"<storage-root {declarations}>{numeric_entities(xhtml)}</storage-root>"
    options: dict[str, Any] = {"resolve_entities": False, "no_network": True, "load_dtd": False}
    try:
        root = etree.fromstring(document.encode("utf-8"), etree.XMLParser(**options))
    except etree.XMLSyntaxError:
        root = etree.fromstring(document.encode("utf-8"), etree.XMLParser(recover=True, **options))
        if root is None:
            raise ValueError("the page body is not well-formed storage format") from None
    return ParsedStorage(root, {uri: prefix for prefix, uri in namespaces.items()})


def collapse(text: str) -> str:
    return re.sub(r"[ \t\r\n\f\v\u00a0]+", " ", text)  # &nbsp; is a space to a reader


class StorageReader:
    """Names, attributes and parameters of a parsed body's elements, under its own prefixes."""

    def __init__(self, prefixes: dict[str, str]) -> None:
        self.prefixes = prefixes

    def name(self, el: Any) -> str:
        tag = el.tag
        if not isinstance(tag, str):
            return ""  # comment or processing instruction
        if tag.startswith("{"):
            uri, local = tag[1:].split("}", 1)
            prefix = self.prefixes.get(uri)
            return f"{prefix}:{local}" if prefix else local
        return tag.lower()

    def attr(self, el: Any, name: str, default: str = "") -> str:
        if ":" in name:
            prefix, local = name.split(":", 1)
            uri = next((u for u, p in self.prefixes.items() if p == prefix), None)
            if uri is not None:
                value = el.get(f"{{{uri}}}{local}")
                if value is not None:
                    return str(value)
        value = el.get(name)
        return str(value) if value is not None else default

    def children(self, el: Any, name: str) -> list[Any]:
        return [c for c in el if self.name(c) == name]

    def macro_name(self, el: Any) -> str:
        return self.attr(el, "ac:name").lower()

    def parameter(self, macro: Any, name: str) -> str:
        for child in macro:
            if self.name(child) == "ac:parameter" and self.attr(child, "ac:name") == name:
                return collapse("".join(child.itertext())).strip()
        return ""

    def is_block(self, el: Any) -> bool:
        name = self.name(el)
        if name in BLOCK_TAGS:
            return True
        if name == "ac:structured-macro" or name == "ac:macro":
            return self.macro_name(el) not in INLINE_MACROS
        return False

    @staticmethod
    def paragraph(text: str) -> str:
        lines = [re.sub(r" {2,}", " ", line).strip() for line in text.split("\n")]
        return "\n".join(line for line in lines if line)

"""Confluence macros (`ac:structured-macro`, `ac:macro`) → Markdown-like text.

`MacroRenderer` owns what each kind of macro becomes: code macros (Atlassian's and the
common third-party ones) as fenced blocks with their language and exact whitespace, panels
with their label and title, includes as a note of what they include, inline macros (status,
Jira keys, attached files) as text within a line, and navigation macros as nothing. It also
keeps what a recovering parser moved into a macro beside its body, since that belongs to
the page. Containers and stray blocks are rendered by the core in `confluence_markup`. A
change here that alters any page's text needs a new `CONVERTER_VERSION` there.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from typing import Any

from rag.sources.confluence_inline import InlineRenderer
from rag.sources.confluence_storage import collapse

# Macros that show other content or navigation: nothing of their own to index.
SILENT_MACROS = {
    "toc",
    "toc-zone",
    "children",
    "pagetree",
    "pagetreesearch",
    "recently-updated",
    "contentbylabel",
    "content-report-table",
    "livesearch",
    "search",
    "blog-posts",
    "attachments",
    "gallery",
    "anchor",
    "create-from-template",
    "contributors",
    "page-index",
    "space-details",
    "popular-labels",
    "related-labels",
    "recently-used-labels",
    "listlabels",
}
PANEL_LABELS = {
    "info": "Info",
    "note": "Note",
    "warning": "Warning",
    "tip": "Tip",
    "error": "Error",
    "success": "Success",
}
# Atlassian's own code macros and the common third-party ones (code-pro held half the code
# blocks of one real space); any other macro with a plain-text body and a language is code too.
CODE_MACROS = {"code", "code-pro", "noformat", "code-block", "sourcecode", "codeblock", "newcode"}
MACRO_PARTS = {"ac:parameter", "ac:rich-text-body", "ac:plain-text-body", "ac:default-parameter"}


def fence_for(code: str) -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=0)
    return "`" * max(3, longest + 1)


class MacroRenderer(InlineRenderer):
    """Macros, block and inline; containers and stray elements come from the core renderer."""

    @abstractmethod
    def container(self, el: Any) -> list[str]:
        """The blocks of an element holding a mix of text, inline elements and blocks."""

    @abstractmethod
    def loose(self, el: Any) -> list[str]:
        """An element found where it does not belong, as blocks of the page."""

    def is_code_macro(self, el: Any) -> bool:
        if self.macro_name(el) in CODE_MACROS:
            return True
        has_plain = any(self.name(c) == "ac:plain-text-body" for c in el)
        return has_plain and bool(self.parameter(el, "language"))

    def fenced(self, code: str, language: str) -> str:
        fence = fence_for(code)
        body = code if code.endswith("\n") else code + "\n"
        return f"{fence}{language}\n{body}{fence}"

    def macro(self, el: Any) -> list[str]:
        name = self.macro_name(el)
        if self.is_code_macro(el):
            return self.code_macro(el)
        if name in SILENT_MACROS:
            return self.macro_strays(el)
        if name in {"include", "excerpt-include"}:
            target = self.link_target(el)
            return ([f"(includes {target})"] if target else []) + self.macro_strays(el)
        body = next((c for c in el if self.name(c) == "ac:rich-text-body"), None)
        plain = next((c for c in el if self.name(c) == "ac:plain-text-body"), None)
        title = self.parameter(el, "title")
        blocks: list[str] = []
        if name in PANEL_LABELS:
            label = f"**{PANEL_LABELS[name]}:**"
            blocks.append(f"{label} {title}" if title else label)
        elif title:
            blocks.append(f"**{title}**")
        if body is not None:
            blocks.extend(self.container(body))
        elif plain is not None:
            text = "".join(plain.itertext())
            if text.strip():
                blocks.append(text.strip("\n"))
        else:
            inline = self.inline_macro(el)
            if inline:
                blocks.append(inline)
        return blocks + self.macro_strays(el)

    def macro_strays(self, el: Any) -> list[str]:
        """What a recovering parser moved into a macro beside its body (it belongs to the page)."""
        blocks: list[str] = []
        for child in el:
            name = self.name(child)
            if name and name not in MACRO_PARTS and not name.startswith("ri:"):
                blocks.extend(self.loose(child))
            if (child.tail or "").strip():
                blocks.append(self.paragraph(collapse(child.tail)))
        return blocks

    def code_macro(self, el: Any) -> list[str]:
        language = self.parameter(el, "language").lower() if self.macro_name(el) != "noformat" else ""
        language = re.sub(r"[^\w+#.-]", "", language)
        plain = next((c for c in el if self.name(c) == "ac:plain-text-body"), None)
        code = "".join(plain.itertext()) if plain is not None else ""
        blocks = []
        title = self.parameter(el, "title")
        if title:
            blocks.append(f"**{title}**")
        if code.strip():
            blocks.append(self.fenced(code, language))
        return blocks + self.macro_strays(el)

    def inline_macro(self, el: Any) -> str:
        name = self.macro_name(el)
        if name == "status":
            title = self.parameter(el, "title") or self.parameter(el, "colour")
            return f"[{title.upper()}]" if title else ""
        if name == "jira":
            key = self.parameter(el, "key")
            return key or ""
        if name == "view-file":
            target = self.link_target(el)
            return f"[{target}]" if target else ""
        if name in SILENT_MACROS:
            return ""
        if self.is_code_macro(el):
            plain = next((c for c in el if self.name(c) == "ac:plain-text-body"), None)
            code = collapse("".join(plain.itertext())).strip() if plain is not None else ""
            return f"`{code}`" if code else ""
        body = next((c for c in el if self.name(c) in {"ac:rich-text-body", "ac:plain-text-body"}), None)
        return self.inline_children(body) if body is not None else ""

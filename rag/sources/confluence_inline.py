"""Confluence storage format's inline elements → Markdown-like text within a line.

`InlineRenderer` owns what sits inside a paragraph: marks (`**bold**`, `*em*`, `~~strike~~`)
with adjacent runs of one mark joined, inline code with the links inside it, `<a>` and
`ac:link` links with a human label of their target, `@name` mentions resolved through a
`UserResolver`, emoticons, images and `<br/>`. Blocks and macros met inside a line are
handed to the layers built on it (`confluence_macros`, `confluence_markup`). A change here
that alters any page's text needs a new `CONVERTER_VERSION` in `confluence_markup`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from rag.sources.confluence_storage import StorageReader, collapse

#: resolve_user({"userkey": ..., "account-id": ..., "username": ...}) → display name or None
UserResolver = Callable[[dict[str, str]], str | None]

MARKS = {"strong": "**", "b": "**", "em": "*", "i": "*", "s": "~~", "del": "~~", "strike": "~~"}


class InlineRenderer(StorageReader, ABC):
    """The inline half of the renderer; blocks and macros come from its subclasses."""

    def __init__(self, prefixes: dict[str, str], resolve_user: UserResolver | None) -> None:
        super().__init__(prefixes)
        self.resolve_user = resolve_user

    @abstractmethod
    def block(self, el: Any) -> list[str]:
        """The blocks of a block element (met inside a line, they are joined into it)."""

    @abstractmethod
    def inline_macro(self, el: Any) -> str:
        """A macro's text within a line."""

    def groups(self, el: Any) -> list[list[Any]]:
        """The children of `el`, adjacent runs of one mark with nothing between them as one group.

        `<strong>I</strong><strong>nstall</strong>` (the editor splits runs like this) must read
        `**Install**`, not `**I****nstall**`, or the word is lost to search and to the reader.
        """
        out: list[list[Any]] = []
        for child in el:
            name = self.name(child)
            kind = MARKS.get(name) or ("`" if name == "code" else None)
            if out and kind is not None:
                previous = out[-1][-1]
                prev_name = self.name(previous)
                prev_kind = MARKS.get(prev_name) or ("`" if prev_name == "code" else None)
                if prev_kind == kind and not previous.tail:
                    out[-1].append(child)
                    continue
            out.append([child])
        return out

    def inline_children(self, el: Any) -> str:
        parts = [collapse(el.text or "")]
        for group in self.groups(el):
            parts.append(self.inline_group(group))
            parts.append(collapse(group[-1].tail or ""))
        return "".join(parts)

    def inline_group(self, group: list[Any]) -> str:
        if len(group) == 1:
            return self.inline(group[0])
        if self.name(group[0]) == "code":
            return self.code_span(group)
        return self.mark(group)

    def mark(self, group: list[Any]) -> str:
        """`**bold**` around a run of one mark, its outer spaces kept outside the marker."""
        marker = MARKS[self.name(group[0])]
        raw = "".join(self.inline_children(el) for el in group)
        inner = raw.strip()
        if not inner:
            return " " if raw else ""
        lead = " " if raw[:1].isspace() else ""
        trail = " " if raw[-1:].isspace() else ""
        return f"{lead}{marker}{inner}{marker}{trail}"

    def code_span(self, group: list[Any]) -> str:
        """Inline code; links inside keep their text, and their target where links show one."""
        parts: list[str] = []
        links: list[tuple[str, str]] = []
        for el in group:
            self.code_text(el, parts, links)
        raw = collapse("".join(parts))
        inner = raw.strip()
        if not inner:
            return ""
        tick = "``" if "`" in inner else "`"
        pad = " " if len(tick) == 2 else ""
        code = f"{tick}{pad}{inner}{pad}{tick}"
        targets = [target for text, target in links if target and target != f"page: {text}"]
        lead = " " if raw[:1].isspace() else ""
        trail = " " if raw[-1:].isspace() else ""
        if len(links) == 1 and targets and links[0][0] == inner:
            return f"{lead}[{code}]({targets[0]}){trail}"
        return lead + code + "".join(f" ({t})" for t in targets) + trail

    def code_text(self, el: Any, parts: list[str], links: list[tuple[str, str]]) -> None:
        parts.append(el.text or "")
        for child in el:
            name = self.name(child)
            if name == "a":
                text = collapse("".join(child.itertext())).strip()
                href = self.attr(child, "href")
                parts.append(text)
                links.append((text, href if href and not href.startswith("#") else ""))
            elif name == "ac:link":
                if any(self.name(c) == "ri:user" for c in child):
                    parts.append(self.ac_link(child))
                else:
                    target = self.link_target(child)
                    title = target.split(": ")[-1] if target.startswith("page: ") else target
                    text = self.link_body(child) or title
                    parts.append(text)
                    links.append((text, target))
            elif name == "ac:emoticon":
                parts.append(self.emoticon(child))
            elif name and not name.startswith("ri:") and name not in {"ac:parameter", "ac:placeholder"}:
                self.code_text(child, parts, links)
            parts.append(child.tail or "")

    def emoticon(self, el: Any) -> str:
        """An emoticon as its short name (`:warning:`): it often carries the meaning of a line."""
        short = self.attr(el, "ac:emoji-shortname").strip()
        if short:
            return short if short.startswith(":") else f":{short}:"
        name = self.attr(el, "ac:name").strip()
        return f":{name}:" if name else self.attr(el, "ac:emoji-fallback")

    def inline(self, el: Any) -> str:
        name = self.name(el)
        if not name:
            return ""
        if name == "br":
            return "\n"
        if name in MARKS:
            return self.mark([el])
        if name == "code":
            return self.code_span([el])
        if name == "a":
            return self.anchor(el)
        if name == "ac:link":
            return self.ac_link(el)
        if name == "ac:image":
            return self.image(el)
        if name == "ac:emoticon":
            return self.emoticon(el)
        if name == "time":
            return self.attr(el, "datetime") or self.inline_children(el)
        if name in {"ac:structured-macro", "ac:macro"}:
            return self.inline_macro(el)
        if name in {"ac:placeholder", "ac:parameter"}:
            return ""
        if name.startswith("ri:"):
            return ""
        if self.is_block(el):
            return " " + " ".join(b.replace("\n", " ") for b in self.block(el)) + " "
        return self.inline_children(el)

    def anchor(self, el: Any) -> str:
        text = self.paragraph(self.inline_children(el)).replace("\n", " ")
        href = self.attr(el, "href")
        if not href or href.startswith("#"):
            return text
        if not text or text == href:
            return f"<{href}>"
        return f"[{text}]({href})"

    def link_body(self, el: Any) -> str:
        for child in el:
            name = self.name(child)
            if name == "ac:plain-text-link-body":
                return collapse("".join(child.itertext())).strip()
            if name == "ac:link-body":
                return self.paragraph(self.inline_children(child)).replace("\n", " ")
        return ""

    def link_target(self, el: Any) -> str:
        """A human label of what an `ac:link` (or include macro) points to."""
        for child in el.iter():
            name = self.name(child)
            if name == "ri:page":
                title = self.attr(child, "ri:content-title")
                space = self.attr(child, "ri:space-key")
                label = f"{space}: {title}" if space and title else title
                return f"page: {label}" if label else ""
            if name == "ri:blog-post":
                return f"blog post: {self.attr(child, 'ri:content-title')}"
            if name == "ri:attachment":
                return f"attachment: {self.attr(child, 'ri:filename')}"
            if name == "ri:url":
                return self.attr(child, "ri:value")
            if name == "ri:space":
                return f"space: {self.attr(child, 'ri:space-key')}"
            if name == "ri:content-entity":
                return f"content: {self.attr(child, 'ri:content-id')}"
        return ""

    def ac_link(self, el: Any) -> str:
        user = next((c for c in el if self.name(c) == "ri:user"), None)
        if user is not None:
            return self.mention(user, self.link_body(el))
        text = self.link_body(el)
        target = self.link_target(el)
        anchor = self.attr(el, "ac:anchor")
        if not target:
            return text or (f"#{anchor}" if anchor else "")
        if target.startswith("page: ") and not text:
            return f"[{target[len('page: ') :]}]"
        if not text:
            return f"[{target}]"
        return f"[{text}]({target})"

    def mention(self, user: Any, text: str) -> str:
        ids = {
            key: self.attr(user, f"ri:{key}")
            for key in ("userkey", "account-id", "username", "local-id")
            if self.attr(user, f"ri:{key}")
        }
        name = None
        if self.resolve_user is not None and ids:
            name = self.resolve_user(ids)
        name = name or text.lstrip("@") or ids.get("username") or "unknown user"
        return f"@{name}"

    def image(self, el: Any) -> str:
        alt = self.attr(el, "ac:alt") or self.attr(el, "ac:title")
        target = next((c for c in el if self.name(c) in {"ri:attachment", "ri:url"}), None)
        source = ""
        if target is not None:
            source = self.attr(target, "ri:filename") or self.attr(target, "ri:value")
        label = alt or source
        return f"[image: {label}]" if label else ""

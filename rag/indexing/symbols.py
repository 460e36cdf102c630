"""What a document defines and what it refers to: the symbol table that the ingest extracts.

For code, tree-sitter's syntax tree gives the definitions (functions, methods, classes, module-level
constants) with their qualified name (`Class.method`), line range, signature line and docstring or
leading comment, and the names the file refers to (calls, imports, attribute uses). For a page
(Markdown, a Confluence page), the title and the headings are its definitions, each qualified by
the headings above it (the breadcrumb). rag.indexing.symbol_store keeps them beside the chunks.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

from rag.indexing.code_chunks import COMMENTS, DEFINITIONS, parse

DefinitionKind = Literal["function", "method", "class", "constant", "page", "heading"]
ReferenceKind = Literal["call", "import", "attribute"]

#: Characters of a docstring or leading comment kept (its first paragraph, at most).
DOC_CHARS = 300
#: Characters of a signature line kept.
SIGNATURE_CHARS = 200
#: References kept per file (a generated file can call thousands of things).
MAX_REFERENCES = 2_000

_CLASS_NODES = frozenset(
    {
        "class_definition",
        "class_declaration",
        "abstract_class_declaration",
        "interface_declaration",
        "enum_declaration",
        "struct_specifier",
        "class_specifier",
        "struct_item",
        "enum_item",
        "trait_item",
        "impl_item",
        "record_declaration",
        "type_declaration",
    }
)
_NAME_FIELDS = ("name", "declarator", "type")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_STRING = re.compile(r"^[rRbBuUfF]*(\"\"\"|'''|\"|')(.*?)(?:\1)?$", re.S)


@dataclass(frozen=True)
class Definition:
    """One definition: a function, method, class or constant in code; a page or heading in a doc."""

    name: str
    qualname: str
    kind: DefinitionKind
    start_line: int  # 1-based, inclusive
    end_line: int
    signature: str = ""
    doc: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Reference:
    """A use of a name in a file: a call, an import, or an attribute access."""

    name: str
    kind: ReferenceKind
    line: int  # 1-based


@dataclass(frozen=True)
class FileSymbols:
    definitions: tuple[Definition, ...] = ()
    references: tuple[Reference, ...] = ()


def _text(node: Any) -> str:
    return bytes(node.text).decode("utf-8", "replace") if node is not None and node.text is not None else ""


def _first_paragraph(text: str) -> str:
    paragraph = text.strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())[:DOC_CHARS]


def _identifier_in(node: Any) -> str:
    """The defined name: the node's `name` field, or the first identifier inside its declarator."""
    for field in _NAME_FIELDS:
        child = node.child_by_field_name(field)
        while child is not None:
            if child.type.endswith("identifier") or child.type in ("name", "type_identifier"):
                return _text(child)
            inner = child.child_by_field_name("declarator") or child.child_by_field_name("name")
            if inner is None:
                found = next((c for c in child.named_children if c.type.endswith("identifier")), None)
                return _text(found) if found is not None else ""
            child = inner
    return ""


def _docstring(node: Any, lines: list[str]) -> str:
    """A Python docstring (the body's first string), else the comment lines right above the node."""
    body = node.child_by_field_name("body")
    if body is not None and body.named_children:
        first = body.named_children[0]
        if first.type == "expression_statement" and first.named_children:
            first = first.named_children[0]
        if first.type == "string":
            literal = _STRING.match(_text(first))
            return _first_paragraph(literal.group(2) if literal else "")
    comment: list[str] = []
    row = node.start_point[0] - 1
    while row >= 0 and lines[row].strip().startswith(("#", "//", "/*", "*", "///", "--")):
        comment.insert(0, lines[row].strip().lstrip("#/*-! ").rstrip("*/ "))
        row -= 1
    return _first_paragraph("\n".join(comment))


def _kind(node: Any, inside_class: bool) -> DefinitionKind:
    if node.type in _CLASS_NODES:
        return "class"
    return "method" if inside_class else "function"


def _constants(root: Any, language: str) -> list[Definition]:
    """Module-level UPPER_CASE assignments (Python) and top-level const declarations elsewhere."""
    out: list[Definition] = []
    for child in root.named_children:
        node = (
            child.named_children[0]
            if child.type == "expression_statement" and child.named_children
            else child
        )
        name = ""
        if node.type == "assignment":
            name = _text(node.child_by_field_name("left"))
        elif node.type in ("lexical_declaration", "const_declaration", "const_item", "static_item"):
            found = next((c for c in node.named_children if c.type.endswith(("declarator", "spec"))), node)
            name = _identifier_in(found) or _text(found.child_by_field_name("name"))
        if name and re.fullmatch(r"[A-Z][A-Z0-9_]{2,}", name):
            first = _text(node).split("\n", 1)[0]
            out.append(
                Definition(
                    name=name,
                    qualname=name,
                    kind="constant",
                    start_line=node.start_point[0] + 1,
                    end_line=node.end_point[0] + 1,
                    signature=first[:SIGNATURE_CHARS],
                )
            )
    return out


def code_symbols(text: str, language: str) -> FileSymbols:
    """The definitions and references of a code file; empty when the language has no grammar."""
    root = parse(text, language)
    if root is None:
        return FileSymbols()
    lines = text.split("\n")
    definitions: list[Definition] = []
    references: list[Reference] = []

    def walk(node: Any, scope: tuple[str, ...], inside_class: bool) -> None:
        for child in node.named_children:
            if child.type in COMMENTS:
                continue
            if child.type in DEFINITIONS:
                name = _identifier_in(child)
                if name:
                    signature = lines[child.start_point[0]].strip()[:SIGNATURE_CHARS]
                    definitions.append(
                        Definition(
                            name=name,
                            qualname=".".join((*scope, name)),
                            kind=_kind(child, inside_class),
                            start_line=child.start_point[0] + 1,
                            end_line=child.end_point[0] + 1,
                            signature=signature,
                            doc=_docstring(child, lines),
                        )
                    )
                    walk(child, (*scope, name), child.type in _CLASS_NODES)
                    continue
            _reference(child, references)
            walk(child, scope, inside_class and child.type not in DEFINITIONS)

    walk(root, (), False)
    definitions.extend(_constants(root, language))
    definitions.sort(key=lambda d: (d.start_line, d.end_line))
    return FileSymbols(tuple(definitions), tuple(references[:MAX_REFERENCES]))


def _reference(node: Any, out: list[Reference]) -> None:
    kind: ReferenceKind | None = None
    target: Any = None
    if node.type in ("call", "call_expression", "method_invocation", "macro_invocation"):
        kind, target = "call", node.child_by_field_name("function") or node.child_by_field_name("name")
    elif node.type in ("import_statement", "import_from_statement", "import_declaration", "use_declaration"):
        for name in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", _text(node)):
            if name not in ("import", "from", "as", "use", "crate", "self", "super", "static"):
                out.append(Reference(name, "import", node.start_point[0] + 1))
        return
    elif node.type in ("attribute", "member_expression", "field_expression", "selector_expression"):
        kind = "attribute"
        target = (
            node.child_by_field_name("attribute")
            or node.child_by_field_name("property")
            or node.child_by_field_name("field")
        )
    if kind is None or target is None:
        return
    if target.type in ("attribute", "member_expression", "field_expression", "selector_expression"):
        target = (
            target.child_by_field_name("attribute")
            or target.child_by_field_name("property")
            or target.child_by_field_name("field")
            or target
        )
    name = _text(target).rsplit(".", 1)[-1].rsplit("::", 1)[-1]
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        out.append(Reference(name, kind, node.start_point[0] + 1))


def page_symbols(title: str, text: str, breadcrumb: str = "") -> FileSymbols:
    """A page's title (its breadcrumb as its description) and its Markdown headings, each
    qualified by the headings above it."""
    lines = text.split("\n")
    definitions = [Definition(title, title, "page", 1, max(1, len(lines)), doc=breadcrumb)] if title else []
    trail: list[tuple[int, str]] = []
    in_fence = False
    opened: list[tuple[int, int, str, str]] = []  # (level, line, name, qualname)
    for number, line in enumerate(lines, start=1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            continue
        level, name = len(match.group(1)), match.group(2)
        while trail and trail[-1][0] >= level:
            trail.pop()
        qualname = " > ".join([*(t for _, t in trail), name])
        trail.append((level, name))
        opened.append((level, number, name, qualname))
    for i, (level, start, name, qualname) in enumerate(opened):
        end = next((s - 1 for lv, s, _, _ in opened[i + 1 :] if lv <= level), len(lines))
        definitions.append(Definition(name, qualname, "heading", start, max(start, end)))
    return FileSymbols(tuple(definitions), ())


def extract(
    *, text: str, language: str | None, title: str = "", is_page: bool = False, breadcrumb: str = ""
) -> FileSymbols:
    """The symbols of one document: code by its grammar, pages and Markdown by their headings."""
    if is_page or language in (None, "markdown", "md", "rst", "text"):
        return page_symbols(title, text, breadcrumb) if (is_page or language == "markdown") else FileSymbols()
    return code_symbols(text, language)

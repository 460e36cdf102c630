"""rag.logs.serialize_ast_parse: which Pythons get the guard, and that parsing still works."""

from __future__ import annotations

import ast
import sys
import threading

from rag.logs import _ast_parse_is_racy, serialize_ast_parse


def test_the_guard_is_for_the_pythons_with_gh_106905() -> None:
    assert _ast_parse_is_racy((3, 11, 7))
    assert _ast_parse_is_racy((3, 12, 1))
    assert not _ast_parse_is_racy((3, 11, 8))
    assert not _ast_parse_is_racy((3, 12, 2))
    assert not _ast_parse_is_racy((3, 13, 0))


def test_parsing_from_many_threads_after_the_guard() -> None:
    serialize_ast_parse()
    serialize_ast_parse()  # twice: still one wrapper
    wrapped = getattr(ast.parse, "_ragbot_serialized", False)
    assert wrapped == _ast_parse_is_racy(sys.version_info[:3])  # installed exactly where needed
    source = "def f(x):\n    return [y for y in range(x) if y % 2]\n" * 50
    errors: list[BaseException] = []

    def parse_many() -> None:
        try:
            for _ in range(20):
                tree = ast.parse(source)
                assert isinstance(tree.body[0], ast.FunctionDef)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=parse_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ast.parse("x = 1", mode="exec").body[0].__class__ is ast.Assign

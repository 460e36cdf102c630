"""What the code source lists and reads: .gitignore, skips, symlinks, encodings, git URLs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rag.errors import ConfigError
from rag.sources.base import LoadFailure
from rag.sources.repository import RepositorySource
from tests.conftest import git, write_files
from tests.reliability import record

FILES: dict[str, str | bytes] = {
    "app/main.py": "def main():\n    return 1\n",
    "app/util.ts": "export const x = 1;\n",
    "docs/deploy.md": "# Deploy\n\nRun ./deploy.sh\n",
    "deploy.sh": "#!/bin/sh\necho deploy\n",
    "Dockerfile": "FROM python:3.11-slim\n",
    "ignored_by_git.log.py": "secret = 1\n",
    ".gitignore": "ignored_by_git*\nbuild/\n",
    "build/out.py": "x = 1\n",
    "node_modules/lib/index.js": "module.exports = 1;\n",
    "package-lock.json": "{}\n",
    "static/app.min.js": "var a=1;\n",
    "image.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00binary",
    "blob.py": b"x = 1\n\x00\x01\x02",
    "huge.txt": "a" * 1_100_000,
    "empty.py": "",
    "latin1.py": "# caf\xe9\nprint('ok')\n".encode("latin-1"),
    ".env": "SLACK_BOT_TOKEN=xoxb-1-2-3\n",
    ".env.example": "SLACK_BOT_TOKEN=\n",
    "certs/server.pem": "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n",
    "keys/id_rsa": "nope\n",
    "config/credentials.json": "{}\n",
}


def source_for(root: Path, **kw: object) -> RepositorySource:
    src = RepositorySource(path=root, **kw)  # type: ignore[arg-type]
    src.prepare()
    return src


def test_git_repository_listing_honours_gitignore_and_skip_rules(git_repo) -> None:  # type: ignore[no-untyped-def]
    root = git_repo(FILES)
    (root / "untracked.py").write_text("y = 2\n")  # untracked but not ignored: indexed
    src = source_for(root)
    refs = {r.doc_id for r in src.scan()}
    assert refs == {
        "app/main.py",
        "app/util.ts",
        "docs/deploy.md",
        "deploy.sh",
        "Dockerfile",
        "latin1.py",
        ".env.example",
        "untracked.py",
    }
    reasons = {s.path: s.reason for s in src.skipped}
    assert reasons["node_modules/lib/index.js"] == "vendored or build folder"
    assert reasons["package-lock.json"] == "lock file"
    assert reasons["static/app.min.js"] == "minified bundle"
    assert reasons["blob.py"] == "binary"
    assert reasons["huge.txt"] == "larger than 1 MB"
    assert reasons["empty.py"] == "empty"
    assert reasons[".env"] == "secret file"
    assert reasons["certs/server.pem"] == "secret file"
    assert reasons["keys/id_rsa"] == "secret file"
    assert reasons["config/credentials.json"] == "secret file"
    assert "ignored_by_git.log.py" not in reasons  # git never listed it
    assert src.commit and len(src.commit) == 40


def test_plain_directory_walk_honours_gitignore(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    write_files(root, FILES)
    write_files(root, {"sub/.gitignore": "local_only.py\n", "sub/local_only.py": "x\n", "sub/kept.py": "y\n"})
    src = source_for(root)
    refs = {r.doc_id for r in src.scan()}
    assert "sub/kept.py" in refs and "app/main.py" in refs
    assert "sub/local_only.py" not in refs
    assert "ignored_by_git.log.py" not in refs
    assert "build/out.py" not in refs and "node_modules/lib/index.js" not in refs
    assert src.commit is None


@pytest.mark.reliability
def test_symlinks_are_never_followed(tmp_path: Path, git_repo) -> None:  # type: ignore[no-untyped-def]
    outside = tmp_path / "outside"
    write_files(outside, {"passwd.txt": "root:x:0:0\n"})
    root = git_repo({"a.py": "a = 1\n"})
    os.symlink(outside / "passwd.txt", root / "link.txt")
    os.symlink(outside, root / "linkdir")
    os.symlink("/etc", root / "etc")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "links")
    for src in (source_for(root), source_for(_copy_without_git(root, tmp_path / "plain"))):
        refs = {r.doc_id for r in src.scan()}
        assert refs == {"a.py"}
        docs = list(src.load(src.scan()))
        assert all("root:x" not in d.text for d in docs if not isinstance(d, LoadFailure))
    record(
        "Repository with symlinks to /etc, to a file and to a folder outside it (git and plain folder)",
        "no symlink is followed: only the real file is listed and nothing from outside is read",
        symlinks=3,
    )


def _copy_without_git(root: Path, dest: Path) -> Path:
    dest.mkdir()
    for entry in root.iterdir():
        if entry.name == ".git":
            continue
        target = dest / entry.name
        if entry.is_symlink():
            os.symlink(os.readlink(entry), target)
        else:
            target.write_bytes(entry.read_bytes())
    return dest


def test_non_utf8_text_is_decoded_with_replacement(git_repo) -> None:  # type: ignore[no-untyped-def]
    root = git_repo({"latin1.py": "# caf\xe9\nprint('ok')\n".encode("latin-1")})
    src = source_for(root)
    (doc,) = list(src.load(src.scan()))
    assert not isinstance(doc, LoadFailure)
    assert "caf\ufffd" in doc.text and "print('ok')" in doc.text


def test_unreadable_file_is_a_load_failure(git_repo) -> None:  # type: ignore[no-untyped-def]
    root = git_repo({"a.py": "a = 1\n", "b.py": "b = 2\n"})
    src = source_for(root)
    refs = src.scan()
    # Root reads any mode, so make b.py unreadable the way root also meets it: gone between
    # listing and reading (a concurrent checkout), or without permission for other users.
    if os.geteuid() == 0:
        (root / "b.py").unlink()
    else:
        (root / "b.py").chmod(0)
    results = list(src.load(refs))
    failures = [r for r in results if isinstance(r, LoadFailure)]
    assert [f.doc_id for f in failures] == ["b.py"]
    assert "cannot read file" in failures[0].error
    assert any(not isinstance(r, LoadFailure) and r.doc_id == "a.py" for r in results)


def test_web_links_point_at_the_commit(git_repo) -> None:  # type: ignore[no-untyped-def]
    root = git_repo({"a.py": "a = 1\n"})
    src = source_for(root, web_url="https://github.com/org/repo/")
    assert src.file_url("a.py") == f"https://github.com/org/repo/blob/{src.commit}/a.py"


def test_missing_path_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CODE_REPO_PATH"):
        RepositorySource(path=tmp_path / "nope").prepare()


def test_git_url_is_cloned_then_pulled(tmp_path: Path, git_repo) -> None:  # type: ignore[no-untyped-def]
    upstream = git_repo({"a.py": "a = 1\n"})
    src = RepositorySource(path=tmp_path / "unused", url=f"file://{upstream}", clone_dir=tmp_path / "clone")
    src.prepare()
    assert {r.doc_id for r in src.scan()} == {"a.py"}
    write_files(upstream, {"b.py": "b = 2\n"})
    git(upstream, "add", "-A")
    git(upstream, "commit", "-qm", "b")
    again = RepositorySource(path=tmp_path / "unused", url=f"file://{upstream}", clone_dir=tmp_path / "clone")
    again.prepare()
    assert {r.doc_id for r in again.scan()} == {"a.py", "b.py"}
    assert again.commit == git(upstream, "rev-parse", "HEAD").strip()


def test_bad_git_url_is_a_configuration_error(tmp_path: Path) -> None:
    src = RepositorySource(path=tmp_path, url=f"file://{tmp_path}/no-such-repo", clone_dir=tmp_path / "c")
    with pytest.raises(ConfigError, match="CODE_REPO_URL"):
        src.prepare()
    assert not (tmp_path / "c").exists()

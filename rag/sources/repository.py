"""A code repository, from a local path or a git URL, as documents (one per file)."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from rag.errors import ConfigError, SourceError
from rag.models import Document
from rag.sources.base import DocumentRef, LoadFailure
from rag.sources.repository_files import (
    MINIFIED_LINE_CHARS,
    SKIPPED_DIRS,
    SkipReason,
    language_for,
    skip_reason_for_path,
)
from rag.sources.specs import RepositorySpec, clone_dir_for, redact_url
from rag.sources.weblinks import file_url as web_file_url

if TYPE_CHECKING:
    from rag.config import Settings

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1_000_000
GIT_TIMEOUT_SECONDS = 600


def _git(args: list[str], cwd: Path | None = None, timeout: float = GIT_TIMEOUT_SECONDS) -> str:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except FileNotFoundError as e:
        raise ConfigError("git is not installed; it is needed to read the code repository") from e
    except subprocess.TimeoutExpired as e:
        raise SourceError(f"git {args[0]} timed out after {timeout:.0f}s") from e
    if done.returncode != 0:
        message = done.stderr.decode("utf-8", "replace").strip().splitlines()
        last = next((line for line in reversed(message) if line.strip()), "failed")
        raise SourceError(f"git {args[0]}: {last}")
    return done.stdout.decode("utf-8", "surrogateescape")


class RepositorySource:
    """Lists a checkout's files (git ls-files, or a .gitignore-aware walk) and reads them."""

    kind = "code"

    def __init__(
        self,
        *,
        path: Path,
        url: str | None = None,
        branch: str | None = None,
        web_url: str | None = None,
        clone_dir: Path | None = None,
        name: str = "code",
    ) -> None:
        self.name = name
        # How errors name this source's settings: the v1 variables, or the sources file's entry.
        self._path_label = "CODE_REPO_PATH" if name == "code" else f"repository {name!r} path"
        self._url_label = "CODE_REPO_URL" if name == "code" else f"repository {name!r} url"
        self.url = url
        self.branch = branch
        self.web_url = web_url.rstrip("/") if web_url else None
        self.root = (clone_dir if url else path) or path
        self.commit: str | None = None
        self.skipped: list[SkipReason] = []
        self._is_git = False

    @classmethod
    def from_spec(cls, spec: RepositorySpec, settings: Settings) -> RepositorySource:
        return cls(
            name=spec.name,
            path=spec.path or Path("."),
            url=spec.url,
            branch=spec.branch,
            web_url=spec.web_url,
            clone_dir=clone_dir_for(settings, spec) if spec.url else None,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> RepositorySource:
        """The v1 repository `code` (CODE_REPO_*)."""
        spec = RepositorySpec(
            name="code",
            path=settings.code_repo_path,
            url=settings.code_repo_url,
            branch=settings.code_repo_branch,
            web_url=settings.code_repo_web_url,
        )
        return cls.from_spec(spec, settings)

    def describe(self) -> str:
        if self.url:
            branch = f" ({self.branch})" if self.branch else ""
            return f"git repository {redact_url(self.url)}{branch}"
        return f"local repository {self.root}"

    # ----- prepare ---------------------------------------------------------------------

    def check(self) -> None:
        if self.url:
            if (self.root / ".git").is_dir():
                return  # cloned before; a pull failure is reported by the run itself
            try:
                _git(["ls-remote", "--heads", "--", self.url], timeout=60)
            except SourceError as e:
                raise ConfigError(f"{self._url_label}: cannot clone {redact_url(self.url)}: {e}") from e
        elif not self.root.is_dir():
            raise ConfigError(f"{self._path_label}: {self.root} is not a directory")

    def prepare(self) -> None:
        if self.url:
            self._sync_clone()
        elif not self.root.is_dir():
            raise ConfigError(f"{self._path_label}: {self.root} is not a directory")
        self.root = self.root.resolve()
        self._is_git = self._inside_git_work_tree()
        self.commit = self._head_commit() if self._is_git else None

    def _sync_clone(self) -> None:
        assert self.url is not None
        target = self.root
        if (target / ".git").is_dir():
            try:
                _git(["remote", "set-url", "origin", self.url], cwd=target, timeout=30)
                ref = self.branch or "HEAD"
                _git(["fetch", "--depth", "1", "origin", ref], cwd=target)
                _git(["reset", "--hard", "FETCH_HEAD"], cwd=target, timeout=120)
                _git(["clean", "-fdx"], cwd=target, timeout=120)
                return
            except SourceError as e:
                raise SourceError(f"{self._url_label}: could not update {redact_url(self.url)}: {e}") from e
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        if tmp.exists():
            _remove_tree(tmp)
        args = ["clone", "--depth", "1", "--no-tags"]
        if self.branch:
            args += ["--branch", self.branch]
        try:
            _git([*args, "--", self.url, str(tmp)])
        except SourceError as e:
            _remove_tree(tmp)
            # A URL that cannot be cloned is a configuration problem the user must fix.
            raise ConfigError(f"{self._url_label}: cannot clone {redact_url(self.url)}: {e}") from e
        tmp.rename(target)

    def _inside_git_work_tree(self) -> bool:
        try:
            top = _git(["rev-parse", "--show-toplevel"], cwd=self.root, timeout=30).strip()
        except SourceError:
            return False
        # Only the repository's own root: a plain folder inside some other checkout is walked.
        return Path(top).resolve() == self.root

    def _head_commit(self) -> str | None:
        try:
            return _git(["rev-parse", "HEAD"], cwd=self.root, timeout=30).strip() or None
        except SourceError:
            return None  # a repository with no commit yet

    # ----- scan ------------------------------------------------------------------------

    def list_paths(self) -> list[str]:
        """Repo-relative POSIX paths of the files to index, sorted."""
        self.skipped = []
        raw = self._git_files() if self._is_git else self._walk_files()
        paths: list[str] = []
        for rel in raw:
            reason = skip_reason_for_path(rel)
            if reason:
                self.skipped.append(SkipReason(rel, reason))
                continue
            full = self.root / rel
            if full.is_symlink():
                # Never followed: a link may point out of the repository (to /etc, say).
                self.skipped.append(SkipReason(rel, "symbolic link"))
                continue
            paths.append(rel)
        return sorted(paths)

    def _git_files(self) -> list[str]:
        out = _git(
            ["-c", "core.quotepath=off", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=self.root,
        )
        seen: set[str] = set()
        files: list[str] = []
        for rel in out.split("\0"):
            if rel and rel not in seen:
                seen.add(rel)
                files.append(rel)
        return files

    def _walk_files(self) -> list[str]:
        import pathspec

        specs: list[tuple[str, pathspec.PathSpec]] = []
        files: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
            gitignore = Path(dirpath) / ".gitignore"
            if gitignore.is_file() and not gitignore.is_symlink():
                lines = gitignore.read_text("utf-8", "replace").splitlines()
                specs.append((rel_dir, pathspec.GitIgnoreSpec.from_lines(lines)))

            def ignored(rel: str, is_dir: bool, _specs: list[tuple[str, pathspec.PathSpec]] = specs) -> bool:
                for base, spec in _specs:
                    if base and not rel.startswith(base + "/"):
                        continue
                    sub = rel[len(base) + 1 :] if base else rel
                    if spec.match_file(sub + ("/" if is_dir else "")):
                        return True
                return False

            kept = []
            for d in sorted(dirnames):
                rel = f"{rel_dir}/{d}" if rel_dir else d
                if d in SKIPPED_DIRS or os.path.islink(os.path.join(dirpath, d)) or ignored(rel, True):
                    continue
                kept.append(d)
            dirnames[:] = kept
            for f in sorted(filenames):
                rel = f"{rel_dir}/{f}" if rel_dir else f
                if not ignored(rel, False):
                    files.append(rel)
        return files

    def scan(self) -> list[DocumentRef]:
        refs: list[DocumentRef] = []
        for rel in self.list_paths():
            full = self.root / rel
            try:
                data = full.read_bytes()
            except OSError as e:
                # Unreadable now: listed with an empty version so load() reports it.
                refs.append(DocumentRef(rel, ""))
                log.debug("cannot read %s: %s", rel, e)
                continue
            reason = _content_skip_reason(rel, data)
            if reason:
                self.skipped.append(SkipReason(rel, reason))
                continue
            refs.append(DocumentRef(rel, hashlib.sha256(data).hexdigest()))
        return refs

    # ----- load ------------------------------------------------------------------------

    def load(self, refs: Iterable[DocumentRef]) -> Iterator[Document | LoadFailure]:
        for ref in refs:
            full = self.root / ref.doc_id
            try:
                if full.is_symlink():
                    raise OSError("symbolic link")
                data = full.read_bytes()
            except OSError as e:
                yield LoadFailure(ref.doc_id, f"cannot read file: {e.strerror or e}")
                continue
            text = data.decode("utf-8", errors="replace")
            yield Document(
                source=self.kind,
                doc_id=ref.doc_id,
                title=ref.doc_id,
                text=text,
                url=self.file_url(ref.doc_id),
                path=ref.doc_id,
                language=language_for(ref.doc_id),
                version=hashlib.sha256(data).hexdigest(),
                metadata={"commit": self.commit} if self.commit else {},
            )

    def file_url(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str | None:
        """A browsable link to a file (and line range), when the repository has a web URL."""
        if not self.web_url:
            return None
        url = web_file_url(self.web_url, self.commit or self.branch or "HEAD", path)
        if start_line is not None:
            from rag.sources.weblinks import line_anchor

            url = line_anchor(url, start_line, end_line)
        return url


def _content_skip_reason(path: str, data: bytes) -> str | None:
    if len(data) > MAX_FILE_BYTES:
        return "larger than 1 MB"
    if b"\0" in data[:8192]:
        return "binary"
    if not data.strip():
        return "empty"
    suffix = PurePosixPath(path).suffix.lower()
    if suffix in {".js", ".css", ".json", ".mjs", ".cjs"}:
        longest = max((len(line) for line in data.split(b"\n")), default=0)
        if longest > MINIFIED_LINE_CHARS:
            return "minified bundle"
    return None


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)

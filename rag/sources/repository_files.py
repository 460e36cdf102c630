"""Which files of a repository are indexed: languages by name, and what is skipped by path."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

LANGUAGES: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".js": "javascript",
    ".jsx": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".ts": "typescript",
    ".tsx": "tsx",
    ".java": "java",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".groovy": "groovy",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".cs": "csharp",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".swift": "swift",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".ps1": "powershell",
    ".sql": "sql",
    ".proto": "protobuf",
    ".graphql": "graphql",
    ".tf": "hcl",
    ".hcl": "hcl",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".scss": "css",
    ".vue": "vue",
    ".svelte": "svelte",
    ".json": "json",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".toml": "toml",
    ".ini": "ini",
    ".cfg": "ini",
    ".xml": "xml",
    ".gradle": "groovy",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".txt": "text",
    ".adoc": "asciidoc",
}
# Files without a telling extension that engineers still ask about.
NAMED_FILES: dict[str, str] = {
    "Dockerfile": "dockerfile",
    "Makefile": "make",
    "Jenkinsfile": "groovy",
    "Procfile": "text",
    "Containerfile": "dockerfile",
    "CODEOWNERS": "text",
    "Vagrantfile": "ruby",
    "Gemfile": "ruby",
    ".env.example": "dotenv",
    ".env.sample": "dotenv",
    ".env.template": "dotenv",
}
SKIPPED_DIRS = {
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    ".venv",
    "venv",
    "env",
    ".env",
    "__pycache__",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "dist",
    "build",
    "target",
    "vendor",
    "third_party",
    "bower_components",
    ".next",
    ".nuxt",
    ".gradle",
    ".idea",
    ".terraform",
    "site-packages",
    "coverage",
    "htmlcov",
    ".eggs",
}
LOCK_FILES = {
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Pipfile.lock",
    "Cargo.lock",
    "Gemfile.lock",
    "composer.lock",
    "go.sum",
    "uv.lock",
    "npm-shrinkwrap.json",
    "bun.lockb",
    "flake.lock",
    "pdm.lock",
    "mix.lock",
    "packages.lock.json",
}
# Never read, whatever their content: these hold credentials by convention.
SECRET_FILE_PATTERNS = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "credentials",
    "credentials.*",
    "*credentials.json",
    ".netrc",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    "*.kdbx",
    "secrets.yml",
    "secrets.yaml",
    "secrets.json",
    "service-account*.json",
    "*.tfvars",
)
SECRET_FILE_ALLOWED = {".env.example", ".env.sample", ".env.template", "example.env"}
MINIFIED_LINE_CHARS = 5_000


@dataclass(frozen=True)
class SkipReason:
    path: str
    reason: str


def language_for(path: str) -> str | None:
    name = PurePosixPath(path).name
    if name in NAMED_FILES:
        return NAMED_FILES[name]
    return LANGUAGES.get(PurePosixPath(path).suffix.lower())


def is_secret_file(name: str) -> bool:
    if name in SECRET_FILE_ALLOWED:
        return False
    return any(fnmatch.fnmatchcase(name.lower(), pattern) for pattern in SECRET_FILE_PATTERNS)


def skip_reason_for_path(path: str) -> str | None:
    """Why a repo-relative path is not indexed by its name alone, or None to index it."""
    parts = PurePosixPath(path).parts
    if any(part in SKIPPED_DIRS for part in parts[:-1]):
        return "vendored or build folder"
    name = parts[-1]
    if is_secret_file(name):
        return "secret file"
    if name in LOCK_FILES:
        return "lock file"
    if re.search(r"[.-]min\.(js|css)$|\.bundle\.js$|\.map$", name):
        return "minified bundle"
    if language_for(path) is None:
        return "not a source or docs file"
    return None

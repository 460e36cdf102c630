"""One typed Settings object, read from the environment and `.env`, built once in the entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rag.errors import ConfigError

#: The kinds of source: each has one Source implementation (rag/sources/) and its own collections.
SourceKind = Literal["code", "confluence"]
KINDS: tuple[SourceKind, ...] = ("code", "confluence")


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of the public contract (docs/interface.md), under its environment name."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    chroma_db_dir: Path = Field(Path("./chroma_db"), alias="CHROMA_DB_DIR")
    chroma_host: str | None = Field(None, alias="CHROMA_HOST")
    chroma_port: int = Field(8000, alias="CHROMA_PORT", ge=1, le=65535)
    ragbot_data_dir: Path = Field(Path("./.ragbot"), alias="RAGBOT_DATA_DIR")
    ragbot_sources_file: Path | None = Field(None, alias="RAGBOT_SOURCES_FILE")

    code_repo_path: Path = Field(Path("./src"), alias="CODE_REPO_PATH")
    code_repo_url: str | None = Field(None, alias="CODE_REPO_URL")
    code_repo_branch: str | None = Field(None, alias="CODE_REPO_BRANCH")
    code_repo_web_url: str | None = Field(None, alias="CODE_REPO_WEB_URL")

    confluence_url: str | None = Field(None, alias="CONFLUENCE_URL")
    confluence_username: str | None = Field(None, alias="CONFLUENCE_USERNAME")
    confluence_password: str | None = Field(None, alias="CONFLUENCE_PASSWORD", repr=False)
    confluence_token: str | None = Field(None, alias="CONFLUENCE_TOKEN", repr=False)
    confluence_space: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="CONFLUENCE_SPACE")
    confluence_include_restricted: bool = Field(False, alias="CONFLUENCE_INCLUDE_RESTRICTED")
    # Per-reader page permissions (docs/confluence.md, "Permissions"): skip = today's behaviour.
    confluence_permissions: Literal["skip", "sync"] = Field("skip", alias="CONFLUENCE_PERMISSIONS")
    confluence_permission_sync_minutes: int = Field(30, alias="CONFLUENCE_PERMISSION_SYNC_MINUTES", ge=1)
    ragbot_member_check_limit: int = Field(500, alias="RAGBOT_MEMBER_CHECK_LIMIT", ge=1)

    local_emb_model: str | None = Field(None, alias="LOCAL_EMB_MODEL")
    code_emb_model: str | None = Field(None, alias="CODE_EMB_MODEL")
    trust_remote_code: bool = Field(False, alias="RAGBOT_TRUST_REMOTE_CODE")
    # Dynamic int8 Linear layers: ~2x faster embedding on CPU, Pass@5 within 0.1 (docs/retrieval.md).
    emb_int8: bool = Field(True, alias="RAGBOT_EMB_INT8")
    # Where the model runs: auto = CUDA (float16, large batches) when torch sees a GPU, else CPU.
    ragbot_device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", alias="RAGBOT_DEVICE")
    # Hosted embeddings and reranking (`litellm:<model>`): the answers' gateway unless set apart.
    embedding_api_base: str | None = Field(None, alias="EMBEDDING_API_BASE")
    embedding_api_key: str | None = Field(None, alias="EMBEDDING_API_KEY", repr=False)
    embedding_concurrency: int = Field(4, alias="EMBEDDING_CONCURRENCY", ge=1, le=64)
    embedding_batch_size: int = Field(96, alias="EMBEDDING_BATCH_SIZE", ge=1, le=4096)
    embedding_batch_tokens: int = Field(16_000, alias="EMBEDDING_BATCH_TOKENS", ge=256)
    embedding_timeout: float = Field(30.0, alias="EMBEDDING_TIMEOUT", gt=0)
    embedding_max_retries: int = Field(5, alias="EMBEDDING_MAX_RETRIES", ge=0, le=20)
    rerank_model: str | None = Field(None, alias="RERANK_MODEL")
    rerank_timeout: float = Field(3.0, alias="RERANK_TIMEOUT", gt=0)
    chunk_size: int | None = Field(None, alias="CHUNK_SIZE", ge=16, le=8192)
    chunk_overlap: int | None = Field(None, alias="CHUNK_OVERLAP", ge=0, le=4096)

    litellm_model: str | None = Field(None, alias="LITELLM_MODEL")
    litellm_api_base: str | None = Field(None, alias="LITELLM_API_BASE")
    litellm_api_key: str | None = Field(None, alias="LITELLM_API_KEY", repr=False)
    llm_timeout_seconds: float = Field(60.0, alias="LITELLM_TIMEOUT", gt=0)
    # The answering loop (rag/answering/agent.py): the model reads the code through tools.
    ragbot_agent: Literal["auto", "off"] = Field("auto", alias="RAGBOT_AGENT")
    agent_max_steps: int = Field(6, alias="RAGBOT_AGENT_MAX_STEPS", ge=1, le=20)
    agent_seconds: float = Field(45.0, alias="RAGBOT_AGENT_SECONDS", gt=0)

    slack_bot_token: str | None = Field(None, alias="SLACK_BOT_TOKEN", repr=False)
    slack_app_token: str | None = Field(None, alias="SLACK_APP_TOKEN", repr=False)
    slack_api_url: str = Field("https://slack.com/api/", alias="SLACK_API_URL")
    ragingest_allowed_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="RAGINGEST_ALLOWED_USERS"
    )
    slack_allowed_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list, alias="SLACK_ALLOWED_CHANNELS"
    )
    slack_allow_external_users: bool = Field(False, alias="SLACK_ALLOW_EXTERNAL_USERS")
    slack_shared_channels: Literal["refuse", "answer"] = Field("refuse", alias="SLACK_SHARED_CHANNELS")

    ingest_interval_minutes: int = Field(60, alias="INGEST_INTERVAL_MINUTES", ge=0)
    ingest_cron: str | None = Field(None, alias="INGEST_CRON")
    ragbot_scheduler: Literal["on", "off"] = Field("on", alias="RAGBOT_SCHEDULER")

    ragbot_api_token: str | None = Field(None, alias="RAGBOT_API_TOKEN", repr=False)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO", alias="LOG_LEVEL")
    log_format: Literal["text", "json"] = Field("text", alias="LOG_FORMAT")

    ragbot_metrics_port: int | None = Field(None, alias="RAGBOT_METRICS_PORT", ge=1, le=65535)
    ragbot_metrics_host: str = Field("127.0.0.1", alias="RAGBOT_METRICS_HOST")
    ragbot_liveness_grace_seconds: float = Field(120.0, alias="RAGBOT_LIVENESS_GRACE_SECONDS", ge=0)
    ragbot_retention_days: int = Field(90, alias="RAGBOT_RETENTION_DAYS", ge=1)

    @field_validator("confluence_space", "ragingest_allowed_users", "slack_allowed_channels", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator(
        "log_level",
        "ragbot_scheduler",
        "log_format",
        "slack_shared_channels",
        "ragbot_device",
        "ragbot_agent",
        "confluence_permissions",
        mode="before",
    )
    @classmethod
    def _normalise_case(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return (
                value.upper()
                if value.lower() in {"debug", "info", "warning", "error", "critical"}
                else value.lower()
            )
        return value

    @field_validator(
        "chroma_host",
        "code_repo_url",
        "code_repo_branch",
        "code_repo_web_url",
        "confluence_url",
        "local_emb_model",
        "code_emb_model",
        "litellm_model",
        "litellm_api_base",
        "litellm_api_key",
        "slack_bot_token",
        "slack_app_token",
        "ingest_cron",
        "ragbot_api_token",
        "confluence_username",
        "confluence_password",
        "confluence_token",
        "embedding_api_base",
        "embedding_api_key",
        "rerank_model",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `.env.example` copies leave `NAME=` lines: an empty value means "not set".
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("rerank_model")
    @classmethod
    def _hosted_reranker(cls, value: str | None) -> str | None:
        if value is not None and not (value.startswith("litellm:") and len(value) > len("litellm:")):
            raise ValueError(
                "must name a hosted reranker as litellm:<provider>/<model>, e.g. litellm:cohere/rerank-v3.5"
            )
        return value

    @field_validator(
        "emb_int8",
        "trust_remote_code",
        "ragbot_metrics_host",
        "ragbot_liveness_grace_seconds",
        "ragbot_retention_days",
        "slack_allow_external_users",
        "ragbot_device",
        "ragbot_agent",
        "agent_max_steps",
        "agent_seconds",
        mode="before",
    )
    @classmethod
    def _blank_bool_is_default(cls, value: object, info: ValidationInfo) -> object:
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[info.field_name or ""].default
        return value

    @field_validator(
        "chunk_size",
        "chunk_overlap",
        "chroma_port",
        "ragbot_sources_file",
        "ragbot_metrics_port",
        mode="before",
    )
    @classmethod
    def _blank_int_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    # ----- derived facts -------------------------------------------------------------

    @property
    def code_configured(self) -> bool:
        """Whether the code source should be ingested by `ingest all` and the scheduler."""
        return (
            bool(self.code_repo_url)
            or "code_repo_path" in self.model_fields_set
            or (self.code_repo_path.is_dir())
        )

    @property
    def confluence_configured(self) -> bool:
        return bool(self.confluence_url)

    def embedding_endpoint(self) -> tuple[str | None, str | None, str, str]:
        """(base, key, base variable, key variable) for hosted embeddings and reranking:
        EMBEDDING_API_BASE/KEY, else the answers' LITELLM_API_BASE/KEY."""
        base_var = (
            "EMBEDDING_API_BASE"
            if self.embedding_api_base
            else ("LITELLM_API_BASE" if self.litellm_api_base else "EMBEDDING_API_BASE")
        )
        key_var = (
            "EMBEDDING_API_KEY"
            if self.embedding_api_key
            else ("LITELLM_API_KEY" if self.litellm_api_key else "EMBEDDING_API_KEY")
        )
        return (
            self.embedding_api_base or self.litellm_api_base,
            self.embedding_api_key or self.litellm_api_key,
            base_var,
            key_var,
        )

    def embedding_model_for(self, kind: str) -> str | None:
        """The model id for a kind's collection; None means the bundled default."""
        if kind == "code" and self.code_emb_model:
            return self.code_emb_model
        return self.local_emb_model

    @property
    def slack_configured(self) -> bool:
        return bool(self.slack_bot_token and self.slack_app_token)


def load_settings(**overrides: object) -> Settings:
    """Build Settings from env + `.env`; a bad value raises ConfigError naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        first = e.errors()[0]
        loc = first.get("loc") or ("?",)
        name = str(loc[0])
        field = Settings.model_fields.get(name)
        if field is not None and field.alias:
            name = field.alias
        raise ConfigError(f"{name.upper()}: {first.get('msg', 'invalid value')}") from e

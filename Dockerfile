# ragbot: one image for every role — `run` (Slack bot), `worker` (scheduler), `serve` (HTTP API).
# Installs with the same scripts/setup.sh as `make setup`, with the CPU build of torch.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VENV=/opt/venv

# git: the code source clones/pulls CODE_REPO_URL and lists files with `git ls-files`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin ragbot \
    && mkdir -p /data /cache/huggingface \
    && chown ragbot:ragbot /data /cache/huggingface

WORKDIR /app
# torch first, in a layer of its own (same script, TORCH_ONLY=1), so code changes don't re-download it.
COPY scripts/setup.sh scripts/setup.sh
RUN TORCH_ONLY=1 DEV=0 TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh
COPY . .
RUN DEV=0 TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/setup.sh

# /data holds the embedded Chroma store (unused with CHROMA_HOST), the run history, locks and
# thread memory (RAGBOT_DATA_DIR, shared by all replicas), and clones of CODE_REPO_URL.
# Mount a local checkout at /data/src, or set CODE_REPO_URL.
# HF_HOME caches models named by LOCAL_EMB_MODEL/CODE_EMB_MODEL (the default one is bundled).
ENV PATH=/opt/venv/bin:$PATH \
    CHROMA_DB_DIR=/data/chroma \
    RAGBOT_DATA_DIR=/data/state \
    HF_HOME=/cache/huggingface \
    ANONYMIZED_TELEMETRY=False \
    TOKENIZERS_PARALLELISM=false
VOLUME ["/data", "/cache/huggingface"]
WORKDIR /data
USER ragbot

EXPOSE 8000
# serve: GET /healthz; worker: the scheduler's heartbeat; run: the Slack connection is up (docs/deployment.md).
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["python", "-m", "rag.healthcheck"]

ENTRYPOINT ["ragbot"]
CMD ["run"]

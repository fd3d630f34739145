FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=3000 \
    RUNPOD_RETRY_DB=/data/runpod-retry.db

WORKDIR /app

# Install the project (and its dependencies) from pyproject.toml; README.md is the declared readme.
COPY pyproject.toml README.md ./
COPY bot/ ./bot/
RUN pip install --no-cache-dir . \
    && useradd --system --create-home --uid 10001 --user-group app \
    && mkdir -p /data \
    && chown app:app /data

# SQLite lives in /data: mount a volume there to keep history across restarts.
USER app

EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '3000') + '/healthz', timeout=4)"]

CMD ["python", "-m", "bot"]

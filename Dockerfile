# Token Broker: a slim, non-root image; settings come from the environment.
# Build: docker build -t token-broker .   Lint: make lint (hadolint)

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml constraints.txt README.md ./
COPY service ./service
# Exactly the versions CI tested: every dependency is pinned in constraints.txt.
RUN /opt/venv/bin/pip install --no-cache-dir --constraint constraints.txt .

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BROKER_PROFILE=production \
    BROKER_BIND=0.0.0.0:8000
RUN useradd --system --uid 10001 --create-home --home-dir /app broker
COPY --from=build /opt/venv /opt/venv
COPY --chown=broker:broker policy.toml /app/policy.toml
WORKDIR /app
USER 10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["token-broker", "healthcheck"]
ENTRYPOINT ["token-broker", "serve"]

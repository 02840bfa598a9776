# Token Broker: a slim, non-root image; settings come from the environment.
# Build: docker build -t token-broker .   Lint: make lint (hadolint)
# Run, build and compose: README "Deployment".

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The tools that build (pip, setuptools) live in their own venv, never in the runtime's;
# exactly the versions CI tested: every dependency, build tools too, is pinned in
# constraints.txt.
COPY constraints.txt pyproject.toml ./
RUN python -m venv /opt/tools \
    && /opt/tools/bin/pip install --no-cache-dir --constraint constraints.txt pip setuptools \
    && python -m venv --without-pip /opt/venv
# The dependencies first, in a layer of their own: a change to the source reuses it.
# twilio's asynchronous HTTP client (aiohttp and its stack, 12 MB) is never used: the
# broker's commands call Twilio through its synchronous client (requests). It is left out.
ARG ASYNC_ONLY="aiohttp aiohttp-retry aiohappyeyeballs aiosignal attrs frozenlist multidict propcache yarl"
# Of twilio's REST domains (each loaded lazily by its client's attribute), the broker and
# its commands use these five; the other thirty (12 MB) are left out.
ARG TWILIO_REST_USED="api monitor taskrouter video voice"
RUN /opt/tools/bin/python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
    && /opt/tools/bin/pip --python /opt/venv/bin/python install --no-cache-dir --no-compile \
        --constraint constraints.txt --requirement requirements.txt \
    && rm -rf /opt/venv/lib/python3.11/site-packages/gevent/tests \
    && /opt/tools/bin/pip --python /opt/venv/bin/python uninstall --yes $ASYNC_ONLY \
    && for domain in /opt/venv/lib/python3.11/site-packages/twilio/rest/*/; do \
        case " $TWILIO_REST_USED " in \
            *" $(basename "$domain") "*) ;; \
            *) rm -rf "$domain" ;; \
        esac; \
    done
COPY README.md ./
COPY service ./service
RUN /opt/tools/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/tools/bin/pip --python /opt/venv/bin/python install --no-cache-dir --no-compile \
        --no-deps /wheels/*.whl \
    && { /opt/tools/bin/pip --python /opt/venv/bin/python check > check.txt || true; } \
    && test "$(grep -cv '^twilio .* requires aiohttp' check.txt)" = 0

FROM python:3.11-slim-bookworm
# The official base carries pip, setuptools and wheel; the runtime needs none of them.
RUN { python -m pip uninstall --yes pip setuptools wheel 2>/dev/null || true; } \
    && groupadd --gid 10001 broker \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app \
        --shell /usr/sbin/nologin broker \
    && mkdir -p /var/lib/token-broker \
    && chown 10001:10001 /var/lib/token-broker
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BROKER_PROFILE=production \
    BROKER_BIND=0.0.0.0:8000 \
    BROKER_STATE_URL=sqlite:////var/lib/token-broker/broker.sqlite3
COPY --from=build /opt/venv /opt/venv
COPY policy.toml /app/policy.toml
WORKDIR /app
# State (SQLite: audit trail, revocations, the pause flag) outlives the container here.
VOLUME ["/var/lib/token-broker"]
USER 10001:10001
EXPOSE 8000
# Asks the server where PID 1 (token-broker serve) listens: its --bind and TLS flags.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["token-broker", "healthcheck", "--serve-pid", "1"]
ENTRYPOINT ["token-broker", "serve"]

# The slurp image: `slurp ticker`, `slurp worker`, `slurp api`, `slurp gc` (compose.yaml).
#
# The base is pinned by its full version; to pin its digest as well (a registry
# policy may want it), pass it in:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.11-slim-bookworm@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A numeric non-root user: Kubernetes' runAsNonRoot can verify a number, not a name.
RUN groupadd --system --gid 10001 slurp \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin slurp

WORKDIR /src
# 1. The dependencies, exactly as locked (scripts/lock), hashes checked: their own
#    layer, rebuilt only when requirements.lock changes.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock

# 2. slurp itself, without dependencies (all locked above; setuptools too, so the
#    build needs no network). Every package of pyproject.toml's packages.find include
#    list (tests/test_deploy.py checks that none is missing).
COPY pyproject.toml README.md ./
COPY slurp slurp
COPY contracts contracts
COPY storage storage
COPY datasources datasources
COPY workers workers
COPY ticker ticker
COPY api api
RUN pip install --no-deps --no-build-isolation . && rm -rf /src

# 3. The example slurpers and jobs: not part of the package (never a top-level
#    `examples` in site-packages), importable from /app and their relative paths
#    (examples/data/...) resolved from the working directory.
WORKDIR /app
COPY examples examples
ENV PYTHONPATH=/app

USER 10001:10001
# Metrics of `slurp worker` (SLURP_METRICS_PORT), `slurp ticker --port`, and the API.
EXPOSE 9191 9192 8000
ENTRYPOINT ["slurp"]
CMD ["--help"]

# The slurp image: `slurp ticker`, `slurp worker`, `slurp api` (see compose.yaml).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
# Every package of pyproject.toml's [tool.setuptools.packages.find] include list
# (tests/test_deploy.py checks that none is missing).
COPY slurp slurp
COPY contracts contracts
COPY storage storage
COPY datasources datasources
COPY workers workers
COPY ticker ticker
COPY api api
COPY examples examples
RUN pip install --no-cache-dir . && rm -rf /app/build
USER nobody
# Metrics of `slurp worker` (SLURP_METRICS_PORT), `slurp ticker --port`, and the API.
EXPOSE 9191 9192 8000
ENTRYPOINT ["slurp"]
CMD ["--help"]

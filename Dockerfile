FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY slurp slurp
COPY contracts contracts
COPY storage storage
COPY workers workers
COPY ticker ticker
COPY examples examples
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT ["slurp"]

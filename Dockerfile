# loadgen image: the CLI with its C engine, for `-via exec://` / `-via job://` and `loadgen k8s manifests`.
# Build: docker build -t loadgen:latest .
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY loadgen ./loadgen
RUN pip install --no-cache-dir "cython>=3.0" wheel \
    && pip wheel --no-cache-dir --no-deps -w /wheels . \
    && pip wheel --no-cache-dir -w /wheels "hdrhistogram>=0.10.8" "httpx>=0.27" "anyio>=4"

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && python -c "import loadgen._core" \
    && useradd --uid 10001 --no-create-home loadgen
USER 10001
ENTRYPOINT []
CMD ["loadgen", "serve", "-bind", "127.0.0.1", "-port", "8080", "-quiet"]

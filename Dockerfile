# mlops: the gateway, control plane and dashboard in one image.
#   docker build -t mlops:0.1.0 .
#   docker run -p 8000:8000 mlops:0.1.0        (single-user demo needs --insecure; see README)
# Build stage: a virtual environment with the package and its PostgreSQL and S3 extras;
# every dependency installs from a wheel, so no compiler is needed here either.
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/mlops
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mlops ./mlops
RUN /opt/mlops/bin/pip install --no-compile ".[postgres,s3]" \
    && /opt/mlops/bin/python -m compileall -q /opt/mlops/lib

# Final stage: the slim runtime, the virtual environment, a non-root user; no build tools.
FROM python:3.11-slim-bookworm
ENV PATH=/opt/mlops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MLOPS_HOME=/var/lib/mlops
RUN groupadd --system --gid 10001 mlops \
    && useradd --system --uid 10001 --gid mlops --home-dir /var/lib/mlops --create-home \
       --shell /usr/sbin/nologin mlops
COPY --from=build /opt/mlops /opt/mlops
USER 10001:10001
WORKDIR /var/lib/mlops
EXPOSE 8000 8001
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v2/health/live', timeout=2).status != 200)"]
ENTRYPOINT ["mlops"]
CMD ["serve", "--host", "0.0.0.0", "--auth"]

# One image for every shardtrain process: the API (default command), the Celery workers and
# the Alembic migrations; docker-compose.yml picks the command per service.
FROM python:3.11-slim

# OPENBLAS_NUM_THREADS=1: numpy's OpenBLAS would otherwise start one thread per core in every
# process, and N workers on one host would then fight over the cores (N x cores threads).
# One BLAS thread per worker process, and throughput scales by running more worker processes
# (`--scale worker=N`). Override it for a single worker that should own the whole machine.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPENBLAS_NUM_THREADS=1

RUN useradd --create-home --uid 10001 --user-group shardtrain

# Install from a throw-away copy of the sources, so the working directory below does not hold
# the packages and every process imports the installed ones, as outside a container. The s3
# extra (boto3) is the client of the blob store that compose runs; tabular (pyarrow) reads
# Parquet and CSV uploads in streaming batches.
COPY pyproject.toml README.md /tmp/src/
COPY core /tmp/src/core
COPY db /tmp/src/db
COPY worker /tmp/src/worker
COPY api /tmp/src/api
COPY migrations /tmp/src/migrations
RUN pip install --no-cache-dir "/tmp/src[s3,tabular]" && rm -rf /tmp/src

# `alembic upgrade head` runs from here: alembic.ini finds migrations/ beside it.
WORKDIR /app
COPY alembic.ini ./
COPY migrations ./migrations

USER shardtrain
EXPOSE 8000
# No HEALTHCHECK here: workers run this image too and serve no HTTP; the API's healthcheck is
# in docker-compose.yml.
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]

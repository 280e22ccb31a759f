# syntax=docker/dockerfile:1.7
# The SizeWise HVAC demo service, instrumented, served by gunicorn with uvicorn workers.
# Every worker exports OTLP to the collector with its own service.instance.id (see
# docs/full-stack.md, "Multi-worker correctness"); /metrics of one worker is not the service's total.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 sizewise \
 && useradd --system --uid 10001 --gid sizewise --create-home --home-dir /home/sizewise sizewise

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sizewise_otel ./sizewise_otel
RUN pip install ".[demo]" && rm -rf /src

# DATABASE_URL without the password in the environment: when DATABASE_PASSWORD_FILE is set (a compose
# secret), the password is read from it and put into DATABASE_URL, URL-encoded, at start.
COPY --chmod=0755 <<'SH' /usr/local/bin/sizewise-entrypoint
#!/bin/sh
set -eu
if [ -n "${DATABASE_PASSWORD_FILE:-}" ] && [ -r "$DATABASE_PASSWORD_FILE" ]; then
  DATABASE_URL="$(python - <<'PY'
import os
from urllib.parse import quote, urlsplit, urlunsplit

url = urlsplit(os.environ["DATABASE_URL"])
password = quote(open(os.environ["DATABASE_PASSWORD_FILE"]).read().strip(), safe="")
host = url.hostname + (f":{url.port}" if url.port else "")
print(urlunsplit(url._replace(netloc=f"{url.username}:{password}@{host}")))
PY
)"
  export DATABASE_URL
fi
exec "$@"
SH

USER sizewise
WORKDIR /home/sizewise
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/livez', timeout=2)"]
ENTRYPOINT ["sizewise-entrypoint"]
CMD ["gunicorn", "-k", "uvicorn.workers.UvicornWorker", "-w", "2", "-b", "0.0.0.0:8000", \
     "--graceful-timeout", "20", "--access-logfile", "-", "sizewise_otel.demo:app"]

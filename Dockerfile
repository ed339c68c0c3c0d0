# syntax=docker/dockerfile:1
#
# The Services AI plugin host: one image for every process of the deployment (migrations,
# Celery workers, beat, Flower, and later the web app); docker-compose.yml picks the command.
#
#   docker build -t services-ai-plugins:latest .
#   docker run --rm services-ai-plugins:latest                       # services-ai --help
#
# The code is installed by root into a virtualenv the runtime user cannot write to; the
# processes run as the unprivileged user "services-ai" (uid 10001), whose only writable place is the
# data folder (SERVICES_AI_DATA_DIR: extracted plugins, beat's schedule file).

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    SERVICES_AI_DATA_DIR=/var/lib/services-ai

RUN groupadd --system --gid 10001 services-ai \
    && useradd --system --uid 10001 --gid services-ai --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin services-ai \
    && python -m venv "$VIRTUAL_ENV" \
    && install -d -o services-ai -g services-ai -m 0750 "$SERVICES_AI_DATA_DIR"

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this (slow) layer is rebuilt only when the
# dependencies change, not on every source edit. With them the "ops" extra (Flower, for the
# compose profile "ops"), so the one image runs every process.
COPY pyproject.toml ./
COPY scripts/build-constraints.txt scripts/
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['ops']))" \
        > /tmp/requirements.txt \
    && pip install --upgrade pip \
    && pip install --build-constraint scripts/build-constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the project itself (setuptools needs the sources and the README to build it). No dev extras.
COPY README.md ./
COPY schemas/ schemas/
COPY services_ai_plugins/ services_ai_plugins/
COPY workers/ workers/
COPY sample_plugin/ sample_plugin/
RUN pip install --build-constraint scripts/build-constraints.txt . \
    && rm -rf build ./*.egg-info

USER 10001:10001

CMD ["services-ai", "--help"]

# The model API: serving dependencies only (api/requirements.txt, pinned with hashes), the
# exported model baked in, a non-root user and a health check.
#   docker build -t boston-housing-api . && docker run -p 8000:8000 boston-housing-api
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# Dependencies first: this layer is rebuilt only when the pins change.
COPY api/requirements.txt /tmp/requirements.txt
RUN python3 -m venv /opt/venv \
    && pip install --require-hashes --no-deps -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin app

WORKDIR /srv
COPY api/ api/
COPY artifact.py ./
# The model changes most often, so it comes last. `make repro` (or `dvc pull`) makes it.
COPY models/model.joblib models/model_card.json models/reference_profile.json models/

USER app
ENV BOSTON_API_MODEL_DIR=/srv/models
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status != 200)"]
CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]

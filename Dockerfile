# The model API: serving dependencies only (api/requirements.txt, pinned with hashes), the
# exported model baked in, a non-root user and a health check. Two stages: the builder makes the
# venv with pip; the final image gets the venv without pip and holds no installer or build tool.
#   docker build -t boston-housing-api .
#   docker run --read-only --cap-drop ALL --tmpfs /tmp -e WEB_CONCURRENCY=2 -p 8000:8000 \
#       boston-housing-api
# Both stages use the same base, so the venv's interpreter link (/opt/venv/bin/python3 -> the
# base's python3) resolves in the final image too.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY api/requirements.txt /tmp/requirements.txt
# --only-binary: every pin installs from a wheel, so nothing is compiled and no compiler is needed
# even here. pip and setuptools leave the venv once they have done their job, and so do the
# libraries' own test suites (scipy, numpy and scikit-learn ship about 65 MB of them), which
# nothing imports when serving.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --no-deps --only-binary :all: \
        -r /tmp/requirements.txt \
    && /opt/venv/bin/python -m pip uninstall --yes pip setuptools wheel \
    && find /opt/venv/lib/python3.11/site-packages -mindepth 2 -type d -name tests -prune \
        -exec rm -rf {} +


FROM ${BASE_IMAGE}
# Take the base's own installer out: Debian's python3-pip and the wheels python3-venv keeps for
# ensurepip (the debootstrap base podman builds here), or the pip, setuptools and bundled wheels
# of python:3.11-slim. Nothing at run time installs packages or makes venvs.
RUN set -eu; \
    if dpkg-query --show --showformat='${Status}' python3-pip 2>/dev/null \
        | grep -q 'ok installed'; then \
        apt-get purge --yes --quiet python3-pip python3-venv python3.11-venv python3-pip-whl \
            python3-setuptools-whl python3-setuptools python3-pkg-resources python3-wheel \
            >/dev/null; \
    fi; \
    if python3 -m pip --version >/dev/null 2>&1; then \
        python3 -m pip uninstall --yes --quiet pip setuptools wheel; \
    fi; \
    rm -rf /root/.cache /var/cache/apt/archives/*.deb /var/lib/apt/lists/* \
        "$(python3 -c 'import sys; print(sys.prefix)')"/lib/python3.11/ensurepip/_bundled; \
    useradd --create-home --no-log-init --uid 10001 --user-group --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv
WORKDIR /srv
COPY api/ api/
COPY artifact.py conformal.py prediction_log.py rotating_log.py ./
# The model changes most often, so it comes last. `make repro` (or `dvc pull`) makes it.
COPY models/model.pkl models/model_card.json models/reference_profile.json models/

# Numeric user, so runtimes that enforce "non-root" (Kubernetes runAsNonRoot) can verify it.
USER 10001:10001
# `python -m api` (api/__main__.py) reads WEB_CONCURRENCY (worker processes) and the server's
# limits from the environment; BOSTON_API_HOST opens it beyond loopback. The image writes nothing
# outside /tmp, so it runs with a read-only root filesystem: with several workers the app keeps
# its multiprocess metrics in a folder it makes under /tmp (PROMETHEUS_MULTIPROC_DIR stays unset).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    WEB_CONCURRENCY=1 \
    BOSTON_API_HOST=0.0.0.0 \
    BOSTON_API_PORT=8000 \
    BOSTON_API_MODEL_DIR=/srv/models
EXPOSE 8000
# (on the port the server was given, should someone set BOSTON_API_PORT)
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('BOSTON_API_PORT', '8000'); sys.exit(urllib.request.urlopen(f'http://127.0.0.1:{port}/health', timeout=2).status != 200)"]
# Exec form: the server is PID 1 and receives the SIGTERM of `docker stop` itself (with several
# workers it is their supervisor, and drains them).
CMD ["python", "-m", "api"]

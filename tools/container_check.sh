#!/usr/bin/env bash
# Build the API image, run it, and check /health, /predict with the README example, the live
# input metrics the reference profile feeds, and a 422.
# Uses docker when an engine answers; otherwise podman, with the recipe for machines where no
# Docker engine runs and image registries are unreachable (a local Debian base via debootstrap).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=boston-housing-api
CONTAINER=boston-housing-api-check
PORT=8000
EXAMPLE='{"CRIM": 0.00632, "ZN": 18.0, "INDUS": 2.31, "CHAS": 0, "NOX": 0.538, "RM": 6.575, "AGE": 65.2, "DIS": 4.09, "RAD": 1, "TAX": 296, "PTRATIO": 15.3, "B": 396.9, "LSTAT": 4.98}'

if [[ ! -f models/model.joblib || ! -f models/model_card.json ]]; then
    echo "container_check: no exported model in models/; run 'make repro' (or 'dvc pull') first" >&2
    exit 1
fi

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=(docker)
    build_args=()
    run_args=(-p "$PORT:8000")
else
    if ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
    fi
    conf_dir=$(mktemp -d)
    printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\n' \
        >"$conf_dir/containers.conf"
    export CONTAINERS_CONF="$conf_dir/containers.conf"
    engine=(podman --runtime runc)
    if ! "${engine[@]}" image exists localhost/pybase; then
        echo "container_check: building a local python3.11 base image with debootstrap"
        root=$(mktemp -d)
        # the Debian mirror this machine's own apt uses: the first URIs of its deb822 sources
        mirror=$(awk '$1 == "URIs:" {print $2; exit}' /etc/apt/sources.list.d/*.sources \
            2>/dev/null || true)
        if [[ -z $mirror ]]; then
            echo "container_check: no URIs line in /etc/apt/sources.list.d/*.sources; cannot" \
                "choose a Debian mirror for the base image" >&2
            exit 1
        fi
        debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
            bookworm "$root" "$mirror" >/dev/null
        cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
        tar -C "$root" -c . | "${engine[@]}" import - localhost/pybase >/dev/null
        rm -rf "$root"
    fi
    # docker format keeps the HEALTHCHECK, which the OCI image format has no field for
    build_args=(--format docker --build-arg BASE_IMAGE=localhost/pybase)
    run_args=(--network host)
fi

echo "container_check: building $IMAGE with ${engine[0]}"
"${engine[@]}" build "${build_args[@]}" -t "$IMAGE" .

"${engine[@]}" rm -f "$CONTAINER" >/dev/null 2>&1 || true
"${engine[@]}" run -d --name "$CONTAINER" "${run_args[@]}" "$IMAGE" >/dev/null
trap '"${engine[@]}" rm -f "$CONTAINER" >/dev/null 2>&1' EXIT

url="http://127.0.0.1:$PORT"
for _ in $(seq 60); do
    curl -fsS "$url/health" >/dev/null 2>&1 && break
    sleep 1
done

fail() {
    "${engine[@]}" logs "$CONTAINER" 2>&1 | tail -n 20 >&2
    echo "container_check: FAILED: $*" >&2
    exit 1
}

health=$(curl -sS "$url/health")
echo "GET /health -> $health"
[[ $health == *'"model_loaded":true'* ]] || fail "/health does not report a loaded model"

prediction=$(curl -sS -X POST "$url/predict" -H 'content-type: application/json' -d "$EXAMPLE")
echo "POST /predict -> $prediction"
[[ $prediction == *'"prediction":'* ]] || fail "/predict did not predict"

# the image carries the reference profile: the live input histograms count the prediction above
observed=$(curl -sS "$url/metrics" | grep -F 'model_input_value_count{feature="RM"}' || true)
echo "GET /metrics -> $observed"
[[ $observed == *' 1.0' ]] || fail "/metrics has no live input histogram (reference profile missing?)"

status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$url/predict" \
    -H 'content-type: application/json' -d '{"RM": "many"}')
echo "POST /predict (invalid) -> $status"
[[ $status == 422 ]] || fail "an invalid body got $status, not 422"

user=$("${engine[@]}" exec "$CONTAINER" id -u)
echo "container user id -> $user"
[[ $user != 0 ]] || fail "the container runs as root"

if [[ ${engine[0]} == podman ]]; then
    # (podman may log that it cannot reach systemd to schedule the check; running it works)
    "${engine[@]}" healthcheck run "$CONTAINER" 2>/dev/null || fail "the image's HEALTHCHECK fails"
    echo "HEALTHCHECK -> healthy"
fi
echo "container_check: passed"

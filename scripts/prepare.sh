#!/usr/bin/env bash
# Installs what building, running and testing the storefront needs on a
# Debian machine that has only the Rust toolchain: a few Debian packages, the
# embedded broker (nisshi, built once into the cache, ~20 minutes on two
# cores), and for the tests a Python venv with the outside implementations
# the tests check against: fastavro (Avro fingerprints), confluent-kafka (the
# Kafka client of the example analytics consumer), oteltest (a real OTLP
# receiver), prometheus_client (the exposition-format parser) and
# standardwebhooks (the reference webhook signature verifier).
#
#   scripts/prepare.sh          what `scripts/up` needs
#   scripts/prepare.sh --test   that, plus what the tests need
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=false
[[ "${1:-}" == "--test" ]] && want_test=true

cache="${STOREFRONT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/storefront}"
mkdir -p "$cache"
step() { printf '\n==> %s\n' "$*" >&2; }

# 1. Debian packages: a C toolchain for the bundled librdkafka and argon2,
#    zlib, redis-server for the Redis baseline of the benchmarks (the bench
#    and its tests start their own, on a free port), and Python for the
#    fastavro check.
packages=(gcc g++ make pkg-config zlib1g-dev redis-server)
python_checks='import fastavro, confluent_kafka, oteltest.sink, prometheus_client.parser, standardwebhooks.webhooks'
if $want_test && ! "$cache/venv/bin/python3" -c "$python_checks" 2>/dev/null \
    && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    packages+=(python3 python3-venv)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    step "Installing Debian packages: ${missing[*]}"
    sudo=""
    [[ $(id -u) -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
fi

# 2. The embedded broker, once, through the same code path as `storefront up`.
if [[ ! -x "${STOREFRONT_NISSHI_BIN:-$cache/nisshi/bin/nisshi}" ]]; then
    step "Building the embedded broker (nisshi) into $cache: a one-time build of about 20 minutes"
    # Built in the profile the caller is about to build anyway.
    profile=(--release)
    $want_test && profile=()
    cargo run --quiet --locked "${profile[@]}" -p storefront -- install-broker
fi

# 3. The Python side of the tests.
if $want_test; then
    venv="$cache/venv"
    if ! "$venv/bin/python3" -c "$python_checks" 2>/dev/null; then
        step "Creating $venv with fastavro, confluent-kafka, oteltest, prometheus_client and standardwebhooks"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            fastavro==1.13.1 confluent-kafka==2.16.1 oteltest==0.49.0 \
            prometheus_client==0.26.0 standardwebhooks==1.1.0
    fi
fi

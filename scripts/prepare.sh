#!/usr/bin/env bash
# Installs what building, running and testing the storefront needs on a
# Debian machine that has only the Rust toolchain: a few Debian packages (a
# Java 17+ runtime and Maven only where missing), the embedded broker
# (Apache Kafka, the version kafka/pom.xml names, fetched once from Maven
# Central into the cache), and for the tests a Python venv with the outside implementations
# the tests check against: fastavro (Avro fingerprints), confluent-kafka (the
# Kafka client of the example analytics consumer), oteltest (a real OTLP
# receiver), prometheus_client (the exposition-format parser) and
# standardwebhooks (the reference webhook signature verifier), the Java
# analytics example (examples/analytics-java: Avro's reference decoder, the
# Kafka clients and Kafka Streams, from Maven Central into Maven's local
# repository ~/.m2, once) built with a JDK, cargo-fuzz for the fuzz smoke
# test, and for the browser tests Debian's Chromium (plus Node.js and npm
# where missing) and playwright-core from the npm registry, which drives it
# (into the cache; it downloads no browser).
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
#    and its tests start their own, on a free port), Python for the checks
#    against outside implementations, and for the broker a Java 17+ runtime
#    and Maven, each only where the machine has none; for the browser tests
#    Chromium, and Node.js and npm where there are none.
packages=(gcc g++ make pkg-config zlib1g-dev redis-server)
if $want_test; then
    packages+=(chromium)
    command -v node >/dev/null 2>&1 || packages+=(nodejs)
    command -v npm >/dev/null 2>&1 || packages+=(npm)
fi
python_checks='import fastavro, confluent_kafka, oteltest.sink, prometheus_client.parser, standardwebhooks.webhooks, schemathesis'
if $want_test && ! "$cache/venv/bin/python3" -c "$python_checks" 2>/dev/null \
    && ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    packages+=(python3 python3-venv)
fi
java_major() {
    "${JAVA_HOME:+$JAVA_HOME/bin/}java" -version 2>&1 | sed -n 's/.*version "\(1\.\)\{0,1\}\([0-9]*\).*/\2/p' | head -n 1
}
major=$(java_major || true)
if [[ -z "$major" || "$major" -lt 17 ]]; then
    packages+=(openjdk-17-jre-headless)
fi
command -v mvn >/dev/null 2>&1 || packages+=(maven)
# The Java analytics example is compiled for the tests: a JDK, not only a runtime.
if $want_test && ! command -v "${JAVA_HOME:+$JAVA_HOME/bin/}javac" >/dev/null 2>&1; then
    packages+=(openjdk-17-jdk-headless)
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
major=$(java_major || true)
if [[ -z "$major" || "$major" -lt 17 ]]; then
    echo "error: Apache Kafka needs Java 17 or newer, and '${JAVA_HOME:+$JAVA_HOME/bin/}java' is ${major:+Java }${major:-missing or broken}." >&2
    echo "       Install openjdk-17-jre-headless (or newer), or point JAVA_HOME at a JDK 17+." >&2
    exit 1
fi

# 2. The embedded broker: Apache Kafka's jars and their runtime
#    dependencies from Maven Central, once, into the cache.
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' kafka/pom.xml)
kafka_home="$cache/kafka-$kafka_version"
if [[ ! -f "$kafka_home/libs/kafka_2.13-$kafka_version.jar" ]]; then
    step "Fetching Apache Kafka $kafka_version and its dependencies from Maven Central into $kafka_home (about 45 MB, once)"
    partial="$kafka_home.partial"
    rm -rf "$partial"
    mkdir -p "$partial"
    if ! mvn -B --file kafka/pom.xml dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$partial/libs" \
            2>&1 | sed -n -e 's/^\[INFO\] Downloaded from [^:]*: .*\/\([^/]*\) (\(.*\))$/  downloaded \1 (\2)/p' \
                         -e 's/^\[INFO\] Copying \([^ ]*\) .*/  copying \1/p' -e '/ERROR/p' -e '/BUILD/p'; then
        echo "error: Maven could not fetch Apache Kafka $kafka_version (see above): check that Maven Central is reachable, then run this again." >&2
        exit 1
    fi
    if [[ ! -f "$partial/libs/kafka_2.13-$kafka_version.jar" ]]; then
        echo "error: Maven did not fetch Apache Kafka $kafka_version (see above): check that Maven Central is reachable, then run this again." >&2
        exit 1
    fi
    cp kafka/pom.xml "$partial/"
    rm -rf "$kafka_home"
    mv "$partial" "$kafka_home"
fi

# 3. The Python side of the tests.
if $want_test; then
    venv="$cache/venv"
    if ! "$venv/bin/python3" -c "$python_checks" 2>/dev/null; then
        step "Creating $venv with fastavro, confluent-kafka, oteltest, prometheus_client, standardwebhooks and schemathesis"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            fastavro==1.13.1 confluent-kafka==2.16.1 oteltest==0.49.0 \
            prometheus_client==0.26.0 standardwebhooks==1.1.0 schemathesis==4.32.5
    fi
fi

# 4. For the browser tests (tests/browser/): playwright-core, the
#    Playwright library without its browser downloads, into the cache; it
#    drives Debian's Chromium (/usr/bin/chromium). 1.61.1 is the newest that
#    runs on Node.js 18, Debian 12's own.
playwright_version=1.61.1
if $want_test; then
    node_dir="$cache/node"
    installed=$(node -p 'require(process.argv[1]).version' \
        "$node_dir/node_modules/playwright-core/package.json" 2>/dev/null || true)
    if [[ "$installed" != "$playwright_version" ]]; then
        node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
        if [[ "$node_major" -lt 18 ]]; then
            echo "error: playwright-core $playwright_version needs Node.js 18 or newer, and 'node' is $([[ "$node_major" == 0 ]] && echo "missing or broken" || echo "Node.js $node_major")." >&2
            echo "       Install Debian's nodejs (apt-get install nodejs npm) or put a Node.js 18+ first on PATH." >&2
            exit 1
        fi
        step "Installing playwright-core $playwright_version from the npm registry into $node_dir (about 10 MB, once)"
        mkdir -p "$node_dir"
        npm install --prefix "$node_dir" --no-audit --no-fund --save-exact \
            --loglevel=http "playwright-core@$playwright_version"
    fi
fi

# 5. The Java analytics example, which the tests run: its dependencies into
#    Maven's local repository (~/.m2, kept between runs like the broker's
#    jars) once, shown as they download, then its jar (target/, seconds).
if $want_test; then
    example=examples/analytics-java
    if ! mvn -B -q -o --file "$example/pom.xml" package >/dev/null 2>&1; then
        step "Fetching the Java analytics example's dependencies from Maven Central (Avro $(sed -n 's:.*<avro.version>\(.*\)</avro.version>.*:\1:p' "$example/pom.xml"), Kafka clients and Streams, with Maven's plugins: about 130 MB, once) and building it"
        if ! mvn -B --file "$example/pom.xml" package \
                2>&1 | sed -n -e 's/^\[INFO\] Downloaded from [^:]*: .*\/\([^/]*\) (\(.*\))$/  downloaded \1 (\2)/p' \
                             -e '/ERROR/p' -e '/BUILD/p'; then
            echo "error: Maven could not build $example (see above): check that Maven Central is reachable, then run this again." >&2
            exit 1
        fi
        if [[ ! -f "$example/target/storefront-analytics.jar" ]]; then
            echo "error: Maven did not build $example (see above)." >&2
            exit 1
        fi
    fi
fi

# 6. For the fuzz smoke test (scripts/fuzz --smoke): cargo-fuzz, once, into
#    ~/.cargo/bin.
if $want_test && ! PATH="$HOME/.cargo/bin:$PATH" cargo fuzz --version >/dev/null 2>&1; then
    step "Installing cargo-fuzz into ~/.cargo/bin (once; a few minutes)"
    cargo install cargo-fuzz --locked
fi

#!/usr/bin/env bash
# Checks deploy/Dockerfile and deploy/compose.yaml as far as possible without
# a Docker engine (the development machines and CI have none), and that
# compose.yaml runs the Kafka the tests run: the version in kafka/pom.xml,
# with the broker settings devstack/src/broker.rs (Node::properties) writes for a
# cluster of as many nodes.
#
#   deploy/validate.sh            # from any directory
#
# Environment:
#   STOREFRONT_VALIDATE_SKIP_CARGO=1   skip the `cargo metadata` check
#
# Exits non-zero if any check fails. Checks that cannot run here are
# reported as SKIPPED, never as passed.
set -euo pipefail

script_dir="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd -- "$script_dir/.." && pwd)"
cd "$repo_root"

compose_file="deploy/compose.yaml"
dockerfile="deploy/Dockerfile"

passed=()
failed=()
skipped=()

pass() { passed+=("$1"); echo "PASS: $1"; }
fail() { failed+=("$1"); echo "FAIL: $1" >&2; }
skip() { skipped+=("$1"); echo "SKIPPED: $1"; }

section() { printf '\n== %s ==\n' "$1"; }

for f in "$compose_file" "$dockerfile"; do
    if [[ ! -f "$f" ]]; then
        echo "FAIL: $f is missing" >&2
        exit 1
    fi
done

# --------------------------------------------------------------------------
# A Python with PyYAML
# --------------------------------------------------------------------------
section "python + PyYAML"
py=""
if ! command -v python3 >/dev/null 2>&1; then
    fail "python3 not found: cannot parse compose.yaml"
elif python3 -c 'import yaml' >/dev/null 2>&1; then
    py="python3"
    echo "using $(command -v python3) (PyYAML already installed)"
else
    venv="${XDG_CACHE_HOME:-$HOME/.cache}/storefront/venv-deploy"
    if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import yaml' >/dev/null 2>&1; then
        echo "PyYAML missing: creating $venv"
        mkdir -p "$(dirname -- "$venv")"
        if python3 -m venv "$venv" \
            && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check PyYAML; then
            :
        else
            fail "could not create a venv with PyYAML at $venv"
        fi
    fi
    if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import yaml' >/dev/null 2>&1; then
        py="$venv/bin/python"
        echo "using $py"
    fi
fi

# --------------------------------------------------------------------------
# compose.yaml and Dockerfile, statically
# --------------------------------------------------------------------------
section "compose.yaml + Dockerfile (static)"
if [[ -n "$py" ]]; then
    if "$py" - "$compose_file" "$dockerfile" <<'PY'
import re
import sys

import yaml

compose_path, dockerfile_path = sys.argv[1], sys.argv[2]
errors = []
notes = []


def err(msg):
    errors.append(msg)


def env_of(svc):
    """A service's environment as a dict of str -> raw value."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for item in env:
            k, _, v = str(item).partition("=")
            out[k] = v if "=" in str(item) else None
        return out
    if isinstance(env, dict):
        return dict(env)
    err(f"environment is neither a map nor a list: {env!r}")
    return {}


def command_argv(cmd):
    if cmd is None:
        return None
    if isinstance(cmd, str):
        return cmd.split()
    return [str(c) for c in cmd]


# ---------------------------------------------------------------- Dockerfile
with open(dockerfile_path, encoding="utf-8") as fh:
    # join continuation lines
    docker_text = re.sub(r"\\\n", " ", fh.read())
instructions = [
    ln.strip() for ln in docker_text.splitlines()
    if ln.strip() and not ln.strip().startswith("#")
]
froms = [ln for ln in instructions if ln.upper().startswith("FROM ")]
if len(froms) < 2:
    err("Dockerfile: expected a multi-stage build (two FROM lines)")
else:
    if "rust:1.95-bookworm" not in froms[0]:
        err(f"Dockerfile: builder stage is not rust:1.95-bookworm: {froms[0]}")
    if "debian:bookworm-slim" not in froms[-1]:
        err(f"Dockerfile: runtime stage is not debian:bookworm-slim: {froms[-1]}")

build_lines = [ln for ln in instructions if "cargo build" in ln]
built_packages = set()
if not build_lines:
    err("Dockerfile: no `cargo build` step")
for ln in build_lines:
    if "--release" not in ln or "--locked" not in ln:
        err("Dockerfile: cargo build must use --release --locked")
    built_packages |= set(re.findall(r"(?:-p|--package)\s+([A-Za-z0-9_-]+)", ln))

copied = {}
for ln in instructions:
    m = re.match(r"COPY\s+--from=\S+\s+/app/target/release/(\S+)\s+(\S+)$", ln)
    if m:
        copied[m.group(1)] = m.group(2)
if not copied:
    err("Dockerfile: copies no binary out of /app/target/release")
for name, dest in sorted(copied.items()):
    if not dest.startswith("/usr/local/bin"):
        err(f"Dockerfile: {name} copied to {dest}, not /usr/local/bin")

runtime_part = docker_text[docker_text.rfind("\nFROM "):] if froms else ""
users = re.findall(r"^\s*USER\s+(\S+)", runtime_part, re.M)
if not users:
    err("Dockerfile: runtime stage has no USER (would run as root)")
elif users[-1].split(":")[0] in ("root", "0"):
    err(f"Dockerfile: runtime stage runs as root ({users[-1]})")
if re.search(r"^\s*ENTRYPOINT\b", docker_text, re.M):
    err("Dockerfile: has an ENTRYPOINT; compose commands expect none")
cmds = re.findall(r"^\s*CMD\s+(\[.*\])\s*$", runtime_part, re.M)
if not cmds:
    err("Dockerfile: runtime stage has no exec-form CMD")
else:
    cmd0 = yaml.safe_load(cmds[-1])[0]
    if cmd0 not in copied:
        err(f"Dockerfile: CMD runs {cmd0!r}, which is not copied into the image")

notes.append(f"Dockerfile builds packages {sorted(built_packages)}")
notes.append(f"Dockerfile copies binaries {sorted(copied)}")

# ------------------------------------------------------------------ compose
with open(compose_path, encoding="utf-8") as fh:
    doc = yaml.safe_load(fh)
services = doc.get("services") or {}
if not services:
    err("compose: no services")

kafka = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka")}
apps = {n: s for n, s in services.items() if n not in kafka}

# ---- brokers
if len(kafka) != 3:
    err(f"compose: expected exactly 3 apache/kafka services, found {sorted(kafka)}")
node_ids = {}
voter_sets = set()
cluster_ids = set()
for name, svc in sorted(kafka.items()):
    env = env_of(svc)
    nid = str(env.get("KAFKA_NODE_ID", ""))
    if not nid.isdigit():
        err(f"{name}: KAFKA_NODE_ID missing or not a number ({nid!r})")
    else:
        node_ids[name] = int(nid)
    roles = {r.strip() for r in str(env.get("KAFKA_PROCESS_ROLES", "")).split(",")}
    if roles != {"broker", "controller"}:
        err(f"{name}: KAFKA_PROCESS_ROLES should be broker,controller, is {roles}")
    voters = str(env.get("KAFKA_CONTROLLER_QUORUM_VOTERS", ""))
    voter_sets.add(voters)
    cid = str(env.get("CLUSTER_ID", ""))
    cluster_ids.add(cid)
    listeners = str(env.get("KAFKA_LISTENERS", ""))
    for want in ("PLAINTEXT://:9092", "CONTROLLER://:9093"):
        if want not in listeners.split(","):
            err(f"{name}: KAFKA_LISTENERS lacks {want} ({listeners!r})")
    adv = str(env.get("KAFKA_ADVERTISED_LISTENERS", ""))
    if f"PLAINTEXT://{name}:9092" not in adv.split(","):
        err(f"{name}: KAFKA_ADVERTISED_LISTENERS should advertise PLAINTEXT://{name}:9092 ({adv!r})")
    if "CONTROLLER" in adv:
        err(f"{name}: the controller listener must not be advertised")
    spm = str(env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", ""))
    for want in ("CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"):
        if want not in spm.split(","):
            err(f"{name}: KAFKA_LISTENER_SECURITY_PROTOCOL_MAP lacks {want}")
    # The image tag and the settings shared with the tests' cluster are
    # compared with kafka/pom.xml and devstack/src/broker.rs in the next section.
    expect = {
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
    }
    for key, want in expect.items():
        got = env.get(key)
        if str(got).lower() != want.lower():
            err(f"{name}: {key} should be {want}, is {got!r}")
    hc = svc.get("healthcheck") or {}
    test = hc.get("test")
    test_s = " ".join(test) if isinstance(test, list) else str(test or "")
    if "/opt/kafka/bin/kafka-broker-api-versions.sh" not in test_s or "localhost:9092" not in test_s:
        err(f"{name}: healthcheck should run kafka-broker-api-versions.sh against localhost:9092")

if len(set(node_ids.values())) != len(node_ids) or len(node_ids) != len(kafka):
    err(f"compose: KAFKA_NODE_IDs are not distinct: {node_ids}")
if len(voter_sets) != 1:
    err(f"compose: brokers disagree on KAFKA_CONTROLLER_QUORUM_VOTERS: {voter_sets}")
elif kafka:
    voters = next(iter(voter_sets))
    parsed = {}
    for v in voters.split(","):
        m = re.fullmatch(r"(\d+)@([A-Za-z0-9_.-]+):(\d+)", v.strip())
        if not m:
            err(f"compose: malformed quorum voter {v!r}")
            continue
        parsed[int(m.group(1))] = (m.group(2), m.group(3))
    want = {nid: (name, "9093") for name, nid in node_ids.items()}
    if parsed != want:
        err(f"compose: quorum voters {parsed} do not list every broker as id@service:9093 ({want})")
if len(cluster_ids) != 1:
    err(f"compose: brokers disagree on CLUSTER_ID: {cluster_ids}")
elif kafka:
    import base64
    cid = next(iter(cluster_ids))
    try:
        raw = base64.urlsafe_b64decode(cid + "=" * (-len(cid) % 4))
        ok = len(cid) == 22 and len(raw) == 16
    except Exception:
        ok = False
    if not ok:
        err(f"compose: CLUSTER_ID {cid!r} is not a base64url-encoded 16-byte UUID")

# ---- storefront services
expected_bootstrap = {f"{n}:9092" for n in kafka}
http_addrs = {}
for name, svc in sorted(apps.items()):
    env = env_of(svc)
    build = svc.get("build")
    if not isinstance(build, dict) or build.get("dockerfile") != "deploy/Dockerfile" or build.get("context") != "..":
        err(f"{name}: build should be {{context: .., dockerfile: deploy/Dockerfile}}, is {build!r}")
    if svc.get("image") != "storefront:latest":
        err(f"{name}: image should be storefront:latest, is {svc.get('image')!r}")
    boot = env.get("KAFKA_BOOTSTRAP_SERVERS")
    got = {b.strip() for b in str(boot or "").split(",") if b.strip()}
    if got != expected_bootstrap:
        err(f"{name}: KAFKA_BOOTSTRAP_SERVERS {boot!r} should name exactly {sorted(expected_bootstrap)}")
    rf = str(env.get("STOREFRONT_REPLICATION_FACTOR", ""))
    if not rf.isdigit():
        err(f"{name}: STOREFRONT_REPLICATION_FACTOR missing or not a number ({rf!r})")
    elif int(rf) > len(kafka):
        err(f"{name}: replication factor {rf} exceeds the {len(kafka)} brokers")
    if not str(env.get("STOREFRONT_PARTITIONS", "")).isdigit():
        err(f"{name}: STOREFRONT_PARTITIONS missing or not a number")
    deps = svc.get("depends_on") or {}
    for broker in kafka:
        cond = deps.get(broker, {}).get("condition") if isinstance(deps, dict) else None
        if cond != "service_healthy":
            err(f"{name}: should depend on {broker} with condition service_healthy")
    argv = command_argv(svc.get("command"))
    if not argv:
        err(f"{name}: no command (the image's default CMD is only --help)")
    elif argv[0] not in copied:
        err(f"{name}: command runs {argv[0]!r}, which the Dockerfile does not copy ({sorted(copied)})")
    addr = env.get("STOREFRONT_HTTP_ADDR")
    if addr is not None:
        if addr in http_addrs.values():
            err(f"{name}: STOREFRONT_HTTP_ADDR {addr} reused")
        http_addrs[name] = addr

for want_svc in ("seed", "user-svc", "history-svc", "ads-svc", "aggregator", "gateway"):
    if want_svc not in apps:
        err(f"compose: service {want_svc!r} missing")
if "seed" in apps and apps["seed"].get("restart") != "no":
    err(f"seed: restart should be the string \"no\", is {apps['seed'].get('restart')!r}")
if "gateway" in apps:
    ports = [str(p) for p in apps["gateway"].get("ports") or []]
    if "8080:8080" not in ports:
        err(f"gateway: should publish 8080:8080, publishes {ports}")

# ---- environment values: types and secrets (all services)
ref_ok = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}$")
secret_name = re.compile(r"KEY|SECRET|PASSWORD|TOKEN", re.I)
for name, svc in sorted(services.items()):
    for key, val in env_of(svc).items():
        if isinstance(val, bool):
            # compose rejects booleans in environment maps
            err(f"{name}: {key} is a YAML boolean; quote it")
        if secret_name.search(key):
            if not isinstance(val, str) or not ref_ok.match(val):
                err(f"{name}: {key} must be a ${{VAR}} or ${{VAR:?message}} reference, "
                    f"not a literal or a default ({'<literal hidden>' if val else val!r})")

# No literal secret-looking strings anywhere in the raw file either.
with open(compose_path, encoding="utf-8") as fh:
    for lineno, line in enumerate(fh, 1):
        if line.lstrip().startswith("#"):
            continue
        m = re.match(r"\s*-?\s*([A-Za-z0-9_]+)\s*[:=]\s*(.*)$", line)
        if m and secret_name.search(m.group(1)):
            v = m.group(2).strip().strip("\"'")
            if v and not ref_ok.match(v):
                err(f"compose.yaml:{lineno}: {m.group(1)} has a literal value")

for n in notes:
    print(f"  {n}")
print(f"  brokers {sorted(kafka)} node ids {sorted(node_ids.values())}")
print(f"  storefront services {sorted(apps)}")
if errors:
    for e in errors:
        print(f"  error: {e}", file=sys.stderr)
    sys.exit(1)
PY
    then
        pass "compose.yaml + Dockerfile static checks (brokers, quorum, listeners, bootstrap servers, commands, secrets)"
    else
        fail "compose.yaml + Dockerfile static checks (see errors above)"
    fi
else
    skip "compose.yaml static checks (no Python with PyYAML)"
fi

# --------------------------------------------------------------------------
# compose.yaml runs the Kafka the tests run: the version in kafka/pom.xml,
# with the settings devstack/src/broker.rs gives a cluster of the same size
# --------------------------------------------------------------------------
section "Kafka version: compose.yaml vs kafka/pom.xml"
pom="kafka/pom.xml"
broker_rs="devstack/src/broker.rs"
kafka_version=""
if [[ ! -f "$pom" ]]; then
    fail "$pom is missing: it names the Kafka version (<kafka.version>)"
else
    kafka_version="$(sed -n 's|.*<kafka\.version>[[:space:]]*\([^<[:space:]]*\)[[:space:]]*</kafka\.version>.*|\1|p' "$pom" | head -n 1)"
    if [[ -z "$kafka_version" ]]; then
        fail "$pom has no <kafka.version>"
    else
        echo "  $pom: <kafka.version> $kafka_version"
    fi
fi
if [[ -n "$kafka_version" ]]; then
    # Every `image: apache/kafka...` line (the x-kafka anchor, or per service).
    kafka_images=()
    while IFS= read -r img; do kafka_images+=("$img"); done < <(
        sed -n 's|^[[:space:]]*image:[[:space:]]*["'\'']\{0,1\}\(apache/kafka[^"'\''[:space:]]*\).*|\1|p' "$compose_file"
    )
    wrong=()
    for img in ${kafka_images[@]+"${kafka_images[@]}"}; do
        echo "  $compose_file: image $img"
        [[ "$img" == "apache/kafka:$kafka_version" ]] || wrong+=("$img")
    done
    if ((${#kafka_images[@]} == 0)); then
        fail "$compose_file names no apache/kafka image (expected apache/kafka:$kafka_version)"
    elif ((${#wrong[@]})); then
        fail "$compose_file runs ${wrong[*]}, but $pom says Kafka $kafka_version (expected apache/kafka:$kafka_version)"
    else
        pass "compose.yaml's Kafka image is apache/kafka:$kafka_version, the <kafka.version> of $pom"
    fi
fi

section "broker settings: compose.yaml vs devstack/src/broker.rs (Node::properties)"
if [[ ! -f "$broker_rs" ]]; then
    fail "$broker_rs is missing: it writes the tests' broker settings"
elif [[ -z "$py" ]]; then
    skip "broker settings comparison (no Python with PyYAML)"
elif "$py" - "$compose_file" "$broker_rs" "$kafka_version" <<'PY'
"""Compares the Kafka nodes of compose.yaml with the server.properties that
Node::properties in devstack/src/broker.rs writes for a cluster of as many nodes.

broker.rs is read as text, not compiled: anything in Node::properties this
script does not understand is an error ("teach validate.sh"), never skipped.
"""
import re
import sys

import yaml

compose_path, broker_path, kafka_version = sys.argv[1], sys.argv[2], sys.argv[3]
errors = []


def err(msg):
    errors.append(msg)


def done():
    for e in errors:
        print(f"  error: {e}", file=sys.stderr)
    sys.exit(1 if errors else 0)


def teach(what):
    err(f"{broker_path}: {what}; update deploy/validate.sh to read it")


# ---------------------------------------------------------------- compose
with open(compose_path, encoding="utf-8") as fh:
    services = (yaml.safe_load(fh) or {}).get("services") or {}
kafka = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka")}
nodes = len(kafka)
if nodes == 0:
    err("compose: no apache/kafka services")
    done()

# The apache/kafka image turns KAFKA_FOO_BAR into foo.bar ("__" -> "_",
# "___" -> "-"), except these, which are JVM or launcher settings.
NOT_PROPERTIES = {
    "KAFKA_VERSION", "KAFKA_HEAP_OPTS", "KAFKA_LOG4J_OPTS", "KAFKA_OPTS",
    "KAFKA_JMX_OPTS", "KAFKA_JVM_PERFORMANCE_OPTS", "KAFKA_GC_LOG_OPTS",
    "KAFKA_LOG4J_ROOT_LOGLEVEL", "KAFKA_LOG4J_LOGGERS",
    "KAFKA_TOOLS_LOG4J_LOGLEVEL", "KAFKA_JMX_HOSTNAME", "KAFKA_JMX_PORT",
}


def env_to_property(key):
    return (key.replace("KAFKA_", "").lower()
            .replace("_", ".").replace("...", "-").replace("..", "_"))


def property_to_env(prop):
    return "KAFKA_" + prop.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def node_properties(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(str(i).partition("=")[::2] for i in env)
    return {
        env_to_property(k): str(v)
        for k, v in env.items()
        if k.startswith("KAFKA_") and k not in NOT_PROPERTIES
    }


# ---------------------------------------------------------------- broker.rs
with open(broker_path, encoding="utf-8") as fh:
    src = fh.read()
start = re.search(r"\bfn properties\(", src)
if not start:
    teach("no `fn properties(` (Node::properties)")
    done()
end = re.search(r"\n\s*(?:pub(?:\([^)]*\))?\s+)?fn\s", src[start.end():])
body = src[start.end():start.end() + end.start()] if end else src[start.end():]

# The locals the properties are written from, for a cluster of `nodes`.
values = {"nodes": nodes}
for name in re.findall(r"\blet\s+(?:mut\s+)?(\w+)", body):
    if name == "text":
        continue
    if name == "replicas":
        m = re.search(r"let\s+replicas\s*=\s*nodes\.min\((\d+)\)\s*;", body)
        if not m:
            teach("`let replicas` is no longer `nodes.min(N)`")
            continue
        values["replicas"] = min(nodes, int(m[1]))
    elif name == "min_isr":
        m = re.search(r"let\s+min_isr\s*=\s*if\s+replicas\s*(>=|>)\s*(\d+)\s*"
                      r"\{\s*(\d+)\s*\}\s*else\s*\{\s*(\d+)\s*\}\s*;", body)
        if not m or "replicas" not in values:
            teach("`let min_isr` is no longer `if replicas >= N { A } else { B }`")
            continue
        r, op, n = values["replicas"], m[1], int(m[2])
        values["min_isr"] = int(m[3]) if (r >= n if op == ">=" else r > n) else int(m[4])
    else:
        teach(f"Node::properties has a local `{name}` this script does not know")

# Set per node, compared by shape below rather than by value.
PER_NODE = {"id", "voters", "addr", "controller", "data"}
RUST_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "'": "'", "\\": "\\", "0": "\0"}


def rust_string(lit):
    # "\<newline><spaces>" continues the line; the rest are one-char escapes.
    return re.sub(r"\\(\n\s*|.)",
                  lambda m: "" if m[1][0] == "\n" else RUST_ESCAPES.get(m[1], "\\" + m[1]),
                  lit)


def fill(template):
    def one(m):
        name = m[1]
        if name in PER_NODE:
            return "<" + name + ">"
        if name in values:
            return str(values[name])
        teach(f"the properties use {{{name}}}, which this script does not know")
        return "<" + name + ">"
    text = template.replace("{{", "\x01").replace("}}", "\x02")
    text = re.sub(r"\{(\w+)(?::[^}]*)?\}", one, text)
    return text.replace("\x01", "{").replace("\x02", "}")


def parse_properties(text, into):
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, val = line.partition("=")
        if not sep:
            teach(f"property line {line!r} has no '='")
            continue
        into[key.strip()] = val.strip()


STRING = r'"((?:[^"\\]|\\.)*)"'


def still_open(after_brace):
    """Whether a block whose `{` came just before `after_brace` is still open at its end."""
    depth = 1
    for ch in after_brace:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0:
            return False
    return True

tests = {}
m = re.search(r"let\s+mut\s+text\s*=\s*format!\(\s*" + STRING, body, re.S)
if not m:
    teach("Node::properties no longer starts from `let mut text = format!(\"...\")`")
    done()
parse_properties(fill(rust_string(m[1])), tests)

# Appended lines: only under `if nodes <op> N { ... }` (or unconditionally).
for m in re.finditer(r"text\.push_str\(\s*" + STRING + r"\s*,?\s*\)", body, re.S):
    # String contents blanked, so that only code braces count.
    before = re.sub(STRING, lambda s: '"' + " " * (len(s[0]) - 2) + '"', body[:m.start()], flags=re.S)
    enclosing = [
        c for c in re.finditer(r"\bif\s+([^{]*?)\s*\{", before)
        if still_open(before[c.end():])
    ]
    applies = True
    for c in enclosing:
        cond = re.fullmatch(r"nodes\s*(>=|<=|==|!=|>|<)\s*(\d+)", c[1].strip())
        if not cond:
            teach(f"a property is appended under `if {c[1].strip()}`")
            applies = False
            continue
        op, n = cond[1], int(cond[2])
        applies &= {">=": nodes >= n, "<=": nodes <= n, "==": nodes == n,
                    "!=": nodes != n, ">": nodes > n, "<": nodes < n}[op]
    if applies:
        parse_properties(fill(rust_string(m[1])), tests)
other = re.search(r"\btext\s*\+=|\btext\.(?:push\(|insert|extend)|write(?:ln)?!\(\s*(?:&mut\s+)?text", body)
if other:
    teach(f"Node::properties changes `text` in a way this script does not read ({other[0]!r})")

# The node ids and the voter list's layout.
if not re.search(r"for\s+id\s+in\s+1\.\.=nodes\b", src):
    teach("the node ids are no longer `for id in 1..=nodes`")
if not re.search(r'format!\(\s*"\{\}@\{\}"\s*,\s*\w+\.id\s*,\s*\w+\.controller\s*\)', src):
    teach("the quorum voters are no longer `format!(\"{}@{}\", n.id, n.controller)`")

# ---------------------------------------------------------------- compare
# Compared by shape (they name hosts, ports and paths), not by value.
SHAPE_ONLY = {"node.id", "controller.quorum.voters", "listeners", "advertised.listeners", "log.dirs"}
# Comma-separated lists whose order does not matter to Kafka.
AS_SETS = {"process.roles", "listener.security.protocol.map"}
# Set in compose.yaml only, and why.
COMPOSE_ONLY = {}


def listener_names(value):
    return sorted(part.split("://", 1)[0].strip() for part in value.split(",") if part.strip())


def as_set(value):
    return sorted(p.strip() for p in value.split(",") if p.strip())


for key in sorted(SHAPE_ONLY):
    if key not in tests:
        teach(f"the tests no longer set {key}")

node_ids = {}
for name, svc in sorted(kafka.items()):
    image = svc.get("image")
    if kafka_version and image != f"apache/kafka:{kafka_version}":
        err(f"{name}: image {image!r}, but kafka/pom.xml says Kafka {kafka_version}")
    props = node_properties(svc)
    for key, want in sorted(tests.items()):
        env = property_to_env(key)
        got = props.get(key)
        if got is None:
            err(f"{name}: {env} missing (the tests set {key}={want})")
        elif key in SHAPE_ONLY:
            continue
        elif key in AS_SETS:
            if as_set(got) != as_set(want):
                err(f"{name}: {env}={got!r}, the tests set {key}={want}")
        elif got != want:
            err(f"{name}: {env}={got!r}, the tests set {key}={want}")
    for key in sorted(set(props) - set(tests) - set(COMPOSE_ONLY)):
        err(f"{name}: {property_to_env(key)} sets {key}, which the tests' cluster does not "
            "(add it to Node::properties, or to COMPOSE_ONLY in deploy/validate.sh with the reason)")
    for key in ("listeners", "advertised.listeners"):
        if key in props and key in tests and listener_names(props[key]) != listener_names(tests[key]):
            err(f"{name}: {key} names listeners {listener_names(props[key])}, "
                f"the tests' {listener_names(tests[key])}")
    if str(props.get("node.id", "")).isdigit():
        node_ids[name] = int(props["node.id"])
    # Each node votes at its own controller listener.
    controller = next((l for l in props.get("listeners", "").split(",")
                       if l.startswith(props.get("controller.listener.names", "CONTROLLER") + "://")), "")
    port = controller.rsplit(":", 1)[-1]
    voters = dict(v.strip().split("@", 1) for v in props.get("controller.quorum.voters", "").split(",") if "@" in v)
    if name in node_ids and voters.get(str(node_ids[name])) != f"{svc.get('hostname', name)}:{port}":
        err(f"{name}: controller.quorum.voters has {node_ids[name]}@{voters.get(str(node_ids[name]))}, "
            f"not {node_ids[name]}@{svc.get('hostname', name)}:{port} (its controller listener)")

if sorted(node_ids.values()) != list(range(1, nodes + 1)):
    err(f"compose: node ids {sorted(node_ids.values())}; the tests' {nodes}-node cluster has 1..{nodes}")

# Topics the services create get STOREFRONT_REPLICATION_FACTOR replicas: the
# tests run them with as many as the cluster's default.
want_rf = tests.get("default.replication.factor")
for name, svc in sorted(services.items()):
    if name in kafka:
        continue
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(str(i).partition("=")[::2] for i in env)
    rf = str(env.get("STOREFRONT_REPLICATION_FACTOR", ""))
    if want_rf is not None and rf != want_rf:
        err(f"{name}: STOREFRONT_REPLICATION_FACTOR={rf!r}, the tests' {nodes}-node cluster uses {want_rf}")

compared = sorted(k for k in tests if k not in SHAPE_ONLY)
print(f"  tests' {nodes}-node cluster (devstack/src/broker.rs):")
for key in compared:
    print(f"    {key}={tests[key]}")
print(f"  compared by shape: {', '.join(sorted(SHAPE_ONLY))}")
print(f"  compose.yaml only: {', '.join(f'{k} ({why})' for k, why in COMPOSE_ONLY.items())}")
done()
PY
then
    pass "compose.yaml's Kafka nodes have the settings devstack/src/broker.rs gives the tests' cluster of the same size"
else
    fail "compose.yaml's Kafka nodes differ from the tests' cluster in devstack/src/broker.rs (see errors above)"
fi

# --------------------------------------------------------------------------
# The Dockerfile's binaries exist in the workspace
# --------------------------------------------------------------------------
section "Dockerfile binaries vs cargo metadata"
if [[ ! -f Cargo.lock ]]; then
    fail "Cargo.lock missing at the repo root (the Dockerfile builds with --locked)"
else
    pass "Cargo.lock present (needed by cargo build --locked)"
fi

binaries=()
while IFS= read -r b; do binaries+=("$b"); done < <(
    sed -n 's|^COPY[[:space:]]\{1,\}--from=[^[:space:]]*[[:space:]]\{1,\}/app/target/release/\([^[:space:]]*\)[[:space:]].*|\1|p' "$dockerfile"
)
packages=()
while IFS= read -r p; do packages+=("$p"); done < <(
    tr '\\\n' '  ' < "$dockerfile" | grep -o -- '-p[[:space:]]\+[A-Za-z0-9_-]\+' | awk '{print $2}'
)

if [[ "${STOREFRONT_VALIDATE_SKIP_CARGO:-0}" == "1" ]]; then
    skip "cargo metadata bin-target check (STOREFRONT_VALIDATE_SKIP_CARGO=1)"
elif ! command -v cargo >/dev/null 2>&1; then
    skip "cargo metadata bin-target check (cargo not installed)"
elif [[ ! -f Cargo.toml ]]; then
    fail "cargo metadata bin-target check: no Cargo.toml at the repo root"
else
    meta_file="$(mktemp)"
    trap 'rm -f "$meta_file"' EXIT
    if ! cargo metadata --no-deps --format-version 1 --offline >"$meta_file" 2>"$meta_file.err"; then
        cat "$meta_file.err" >&2
        rm -f "$meta_file.err"
        fail "cargo metadata --no-deps failed"
    else
        rm -f "$meta_file.err"
        missing=()
        if [[ -n "$py" ]]; then
            # Parse the JSON properly: bins = targets whose kind includes "bin".
            while IFS= read -r line; do missing+=("$line"); done < <(
                "$py" - "$meta_file" "${binaries[*]}" "${packages[*]}" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
bins = {t["name"] for p in meta["packages"] for t in p["targets"] if "bin" in t["kind"]}
pkgs = {p["name"] for p in meta["packages"]}
for b in sys.argv[2].split():
    if b not in bins:
        print(f"binary {b} (no bin target named {b})")
for p in sys.argv[3].split():
    if p not in pkgs:
        print(f"package {p} (not a workspace member)")
PY
            )
        else
            # No Python: grep the one-line JSON for a bin target of that name.
            for b in "${binaries[@]}"; do
                grep -q "\"kind\":\[\"bin\"\][^}]*\"name\":\"$b\"" "$meta_file" \
                    || missing+=("binary $b (no bin target named $b)")
            done
        fi
        if ((${#missing[@]})); then
            for m in "${missing[@]}"; do echo "  missing: $m" >&2; done
            fail "Dockerfile names binaries/packages the workspace does not have"
        else
            pass "every Dockerfile binary (${binaries[*]}) is a bin target and every -p package is a workspace member"
        fi
    fi
fi

# --------------------------------------------------------------------------
# docker compose config
# --------------------------------------------------------------------------
section "docker compose config"
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    # The secrets are required (${VAR:?}). Without deploy/.env, use
    # placeholders so that `config` can still check the file's structure.
    compose_env=()
    if [[ ! -f deploy/.env ]]; then
        for v in STOREFRONT_USER_SVC_SECRET_KEY STOREFRONT_USER_SVC_PUBLIC_KEY STOREFRONT_COOKIE_KEY; do
            [[ -n "${!v:-}" ]] || compose_env+=("$v=validate-placeholder")
        done
    fi
    if env ${compose_env[@]+"${compose_env[@]}"} docker compose -f "$compose_file" config -q; then
        pass "docker compose config -q"
    else
        fail "docker compose config -q"
    fi
else
    echo "SKIPPED: docker compose config (no Docker engine here)"
    skipped+=("docker compose config (no Docker engine here)")
fi

# --------------------------------------------------------------------------
# hadolint
# --------------------------------------------------------------------------
section "hadolint"
if command -v hadolint >/dev/null 2>&1; then
    if hadolint "$dockerfile"; then
        pass "hadolint $dockerfile"
    else
        fail "hadolint $dockerfile"
    fi
else
    skip "hadolint (not installed)"
fi

# --------------------------------------------------------------------------
# Lint this script with ShellCheck, when available
# --------------------------------------------------------------------------
section "shellcheck"
if command -v shellcheck >/dev/null 2>&1; then
    if shellcheck "deploy/validate.sh"; then
        pass "shellcheck deploy/validate.sh"
    else
        fail "shellcheck deploy/validate.sh"
    fi
else
    skip "shellcheck (not installed)"
fi

# --------------------------------------------------------------------------
section "summary"
echo "Not checked anywhere here: building the image, starting the cluster,"
echo "or reaching /healthz (that needs a Docker engine)."
for p in ${passed[@]+"${passed[@]}"}; do echo "  passed:  $p"; done
for s in ${skipped[@]+"${skipped[@]}"}; do echo "  skipped: $s"; done
for f in ${failed[@]+"${failed[@]}"}; do echo "  FAILED:  $f"; done
echo "${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
if ((${#failed[@]})); then
    exit 1
fi

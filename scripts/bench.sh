#!/usr/bin/env bash
# Side-by-side benchmark of fubar, Mosquitto and rumqttd with one load generator
# (examples/bench.rs), on one machine, in one run.
#
# For every scenario the brokers take turns (A B C, then C B A, ...) for ROUNDS rounds; each
# run starts a fresh broker on a free loopback port, measures it from /proc, and stops it by
# pid. Every run's JSON line goes to the results file; at the end one table per scenario shows
# medians per broker and fubar/peer ratios.
#
# fubar runs with FUBAR_AUTH__ALLOW=127.0.0.0/8,::1 (the generator connects from 127.0.0.x
# sources; by default only 127.0.0.1 and ::1 are trusted and other addresses are asked for
# credentials and rate-limited; authentication itself stays on), FUBAR_HTTP__PORT=0 on
# 127.0.0.1 (a free port for the admin/metrics server) and
# FUBAR_SESSION__MAX_QUEUED_MESSAGES=100000, the per-client queue Mosquitto gets below
# (fubar's default, 1000, drops QoS 0 messages in fan-in once the one subscriber's
# connection falls behind; they are counted in fubar_dropped_messages_total).
#
# The qos1-persistent scenario (QoS 1 pub/sub, subscribers with clean session 0) compares
# fubar-strict (store.durability = "strict": PUBACK after the fsync), fubar-relaxed and
# Mosquitto with `persistence true` (autosave_interval 1800, Mosquitto's default); rumqttd
# has no disk persistence and is left out of it (n/a). Every broker start gets a fresh
# directory, so no session survives from one run to the next.
#
# Usage: scripts/bench.sh            full run (defaults below, ~20 minutes)
#        QUICK=1 scripts/bench.sh    smoke run: 1 round, 2 s, small sizes
#        scripts/bench.sh table FILE print the tables of an earlier results file
#
# Settings (environment):
#   ROUNDS=3 DURATION=10 DRAIN=2         rounds, seconds of load per run, max drain seconds
#   BROKERS="fubar mosquitto rumqttd"    brokers to compare (any subset, in this order)
#   SCENARIOS="qos0 qos1 fanout fanin latency conn qos1-persistent"
#   PUBS=100 SUBS=100 TOPICS=100 PAYLOAD=64 WINDOW=100   qos0 / qos1 / qos1-persistent
#   FANOUT_SUBS=1000                     fanout: 1 publisher -> N subscribers
#   FANIN_PUBS=1000 FANIN_WINDOW=20      fanin: N publishers -> 1 subscriber
#   LAT_RATE=20000 LAT_QOS=1             latency: pub/sub at a fixed total rate (msg/s)
#   CONN_N=19000 CONN_HOLD=40            conn: idle connections and seconds held (fubar
#                                        parks a connection after 10 s idle, and its
#                                        allocator returns the freed memory over ~10 s
#                                        more: the RSS read at the end is the idle state)
#   RESULTS=target/bench/results-<time>.jsonl   (generator diagnostics: same name, .stderr)
#   RUMQTTD_ROOT=<dir>                   where `cargo install rumqttd` caches its binary
#   NO_BUILD=1                           skip `cargo build`
#   FUBAR_BIN=<path>                     fubar binary (default target/release/fubar)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

table() {
  python3 - "$1" <<'PY'
import json, statistics, sys
from collections import OrderedDict

rows = []
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except ValueError:
                pass

def med(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None

def total(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return sum(values) if values else None

# (label, key, how to combine rounds, scale, higher is better?)
THROUGHPUT = [
    ("deliveries/s", "received_per_sec", med, 1, True),
    ("sent/s", "sent_per_sec", med, 1, True),
    ("p50 latency ms", "p50_us", med, 1e-3, False),
    ("p99 latency ms", "p99_us", med, 1e-3, False),
    ("broker CPU s", "broker_cpu_secs", med, 1, False),
    ("broker peak RSS MB", "broker_peak_rss_kb", med, 1 / 1024, False),
    ("loss (sum)", "loss", total, 1, False),
    ("gaps (sum)", "gaps", total, 1, False),
    ("generator CPU (cores)", "gen_cpu_util", med, 1, None),
    ("errors (sum)", "errors", total, 1, None),
]
LATENCY = [
    ("p50 latency ms", "p50_us", med, 1e-3, False),
    ("p99 latency ms", "p99_us", med, 1e-3, False),
    ("max latency ms", "max_us", med, 1e-3, False),
    ("deliveries/s", "received_per_sec", med, 1, True),
    ("broker CPU s", "broker_cpu_secs", med, 1, False),
    ("broker peak RSS MB", "broker_peak_rss_kb", med, 1 / 1024, False),
    ("loss (sum)", "loss", total, 1, False),
    ("generator CPU (cores)", "gen_cpu_util", med, 1, None),
    ("errors (sum)", "errors", total, 1, None),
]
CONN = [
    ("RSS per connection B", "rss_per_conn_bytes", med, 1, False),
    ("connected", "connected", med, 1, True),
    ("connects/s", "connect_rate", med, 1, True),
    ("broker peak RSS MB", "broker_peak_rss_kb", med, 1 / 1024, False),
    ("dropped (sum)", "dropped", total, 1, False),
    ("errors (sum)", "errors", total, 1, None),
]

cases = OrderedDict()
for r in rows:
    cases.setdefault(r.get("case", r.get("scenario", "?")), []).append(r)

def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"

for case, runs in cases.items():
    brokers = list(OrderedDict.fromkeys(r.get("broker", "?") for r in runs))
    first = next((r for r in runs if not r.get("failed")), runs[0])
    scenario = first.get("scenario")
    metrics = CONN if scenario == "conn" else LATENCY if first.get("mode") == "rate" else THROUGHPUT
    failed = {b: sum(1 for r in runs if r.get("broker") == b and r.get("failed")) for b in brokers}
    rounds = max(sum(1 for r in runs if r.get("broker") == b) for b in brokers)
    if scenario == "conn":
        desc = f"{first.get('connections', first.get('requested', '?'))} idle connections, held {first.get('hold_secs', '?')} s"
    elif scenario:
        desc = (f"{scenario} pubs={first.get('pubs')} subs={first.get('subs')} topics={first.get('topics')} "
                f"qos={first.get('qos')} payload={first.get('payload')} B, "
                + (f"rate {first.get('rate'):,.0f} msg/s" if first.get("mode") == "rate" else f"window {first.get('window')}")
                + f", {first.get('secs')} s")
    else:
        desc = "no successful run"
    if first.get("persistent"):
        desc += ", persistent subscriber sessions"
    print(f"\n== {case}: {desc} — medians of {rounds} round(s) ==")
    if first.get("persistent"):
        print("(rumqttd: n/a, it has no disk persistence)")
    ours = [b for b in brokers if b.startswith("fubar")]
    peers = [b for b in brokers if not b.startswith("fubar")]
    pairs = [(a, p) for a in ours for p in peers]
    header = ["metric"] + brokers + [f"{a}/{p}" for a, p in pairs]
    table_rows = []
    for label, key, combine, scale, _better in metrics:
        vals = {}
        for b in brokers:
            v = combine([r.get(key) for r in runs if r.get("broker") == b and not r.get("failed")])
            vals[b] = None if v is None else v * scale
        row = [label] + [fmt(vals[b]) for b in brokers]
        for ours_b, p in pairs:
            a, c = vals.get(ours_b), vals.get(p)
            row.append(f"{a / c:.2f}" if a is not None and c not in (None, 0) else "-")
        table_rows.append(row)
    if any(failed.values()):
        table_rows.append(["failed runs"] + [str(failed[b]) for b in brokers] + [""] * (len(header) - 1 - len(brokers)))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *table_rows)]
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for row in table_rows:
        print("  ".join(str(x).ljust(w) if i == 0 else str(x).rjust(w) for i, (x, w) in enumerate(zip(row, widths))))
PY
}

if [ "${1:-}" = "table" ]; then
  table "${2:?usage: scripts/bench.sh table RESULTS.jsonl}"
  exit 0
fi

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
DRAIN=${DRAIN:-2}
BROKERS=${BROKERS:-"fubar mosquitto rumqttd"}
SCENARIOS=${SCENARIOS:-"qos0 qos1 fanout fanin latency conn qos1-persistent"}
PUBS=${PUBS:-100}
SUBS=${SUBS:-100}
TOPICS=${TOPICS:-100}
PAYLOAD=${PAYLOAD:-64}
WINDOW=${WINDOW:-100}
FANOUT_SUBS=${FANOUT_SUBS:-1000}
FANIN_PUBS=${FANIN_PUBS:-1000}
FANIN_WINDOW=${FANIN_WINDOW:-20}
LAT_RATE=${LAT_RATE:-20000}
LAT_QOS=${LAT_QOS:-1}
CONN_N=${CONN_N:-19000}
CONN_HOLD=${CONN_HOLD:-40}
if [ "${QUICK:-0}" = "1" ]; then
  ROUNDS=1 DURATION=2 DRAIN=1 PUBS=10 SUBS=10 TOPICS=10 FANOUT_SUBS=100 FANIN_PUBS=100
  LAT_RATE=2000 CONN_N=1000 CONN_HOLD=2
fi
if [ -w /work ]; then
  DEFAULT_RUMQTTD_ROOT=/work/.cache/rumqttd
else
  DEFAULT_RUMQTTD_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/fubar-bench/rumqttd
fi
RUMQTTD_ROOT=${RUMQTTD_ROOT:-$DEFAULT_RUMQTTD_ROOT}
RESULTS=${RESULTS:-$ROOT/target/bench/results-$(date +%Y%m%d-%H%M%S).jsonl}
GEN_LOG=${RESULTS%.jsonl}.stderr

log() { echo "bench: $*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# --- tools -------------------------------------------------------------------------------
command -v python3 >/dev/null || { log "python3 is required"; exit 1; }

if [ "${NO_BUILD:-0}" != "1" ]; then
  log "building fubar and the load generator (release)"
  cargo build --release --examples --bins
fi
BENCH=$ROOT/target/release/examples/bench
FUBAR=${FUBAR_BIN:-$ROOT/target/release/fubar}
[ -x "$BENCH" ] || { log "missing $BENCH (build failed?)"; exit 1; }

MOSQUITTO=$(command -v mosquitto || true)
[ -z "$MOSQUITTO" ] && [ -x /usr/sbin/mosquitto ] && MOSQUITTO=/usr/sbin/mosquitto
if [[ " $BROKERS " == *" mosquitto "* ]] && [ -z "$MOSQUITTO" ]; then
  log "installing mosquitto from Debian"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mosquitto >/dev/null
  MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
fi

RUMQTTD=$(command -v rumqttd || true)
[ -z "$RUMQTTD" ] && [ -x "$RUMQTTD_ROOT/bin/rumqttd" ] && RUMQTTD=$RUMQTTD_ROOT/bin/rumqttd
if [[ " $BROKERS " == *" rumqttd "* ]] && [ -z "$RUMQTTD" ]; then
  # Not --locked: its lock file no longer builds on current rustc. Takes several minutes once.
  log "installing rumqttd into $RUMQTTD_ROOT (cargo install, cached for later runs)"
  if CARGO_INSTALL_ROOT=$RUMQTTD_ROOT nice -n 10 cargo install rumqttd >&2; then
    RUMQTTD=$RUMQTTD_ROOT/bin/rumqttd
  else
    log "rumqttd failed to install: leaving it out"
  fi
fi

AVAILABLE=""
for b in $BROKERS; do
  case $b in
    fubar) [ -x "$FUBAR" ] && AVAILABLE="$AVAILABLE fubar" || log "no $FUBAR: leaving fubar out" ;;
    mosquitto) [ -x "$MOSQUITTO" ] && AVAILABLE="$AVAILABLE mosquitto" || log "no mosquitto: leaving it out" ;;
    rumqttd) [ -n "$RUMQTTD" ] && AVAILABLE="$AVAILABLE rumqttd" ;;
    *) log "unknown broker $b"; exit 1 ;;
  esac
done
read -r -a ORDER <<<"$AVAILABLE"
[ ${#ORDER[@]} -gt 0 ] || { log "no broker to run"; exit 1; }

# Many connections: give the generator and the brokers the whole open-file limit.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/fubar-bench.XXXXXX")
mkdir -p "$(dirname "$RESULTS")"
: >"$RESULTS"
: >"$GEN_LOG"
BPID=""

stop_broker() {
  if [ -n "$BPID" ] && kill -0 "$BPID" 2>/dev/null; then
    kill -TERM "$BPID" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$BPID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$BPID" 2>/dev/null || true
  fi
  [ -n "$BPID" ] && wait "$BPID" 2>/dev/null || true
  BPID=""
}
trap 'stop_broker; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until the broker accepts TCP connections on $1 (or died / 20 s passed).
wait_port() {
  python3 - "$1" "$BPID" <<'PY'
import os, socket, sys, time
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 20
while time.time() < deadline:
    if not os.path.exists(f"/proc/{pid}"):
        sys.exit(1)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
PY
}

# Starts broker $1 for case $2 on a free port in a fresh directory; sets BPID and BPORT.
# fubar-strict / fubar-relaxed are fubar with that store.durability; Mosquitto persists to
# disk only in the qos1-persistent case.
start_broker() {
  local name=$1 case=$2 dir durability=strict persistence=false
  BPORT=$(free_port)
  dir=$(mktemp -d "$WORK/$name.XXXXXX")
  [ "$case" = "qos1-persistent" ] && persistence=true
  case $name in
    fubar | fubar-strict | fubar-relaxed)
      [ "$name" = "fubar-relaxed" ] && durability=relaxed
      FUBAR_MQTT__BIND=127.0.0.1 FUBAR_NODE__LOG_DIR="$dir/log" FUBAR_NODE__LOG_LEVEL=warning \
        FUBAR_AUTH__ALLOW="127.0.0.0/8,::1" FUBAR_HTTP__BIND=127.0.0.1 FUBAR_HTTP__PORT=0 \
        FUBAR_STORE__DURABILITY=$durability FUBAR_SESSION__MAX_QUEUED_MESSAGES=100000 \
        "$FUBAR" run --mqtt-port "$BPORT" --data-dir "$dir/data" >"$dir/out.log" 2>&1 &
      ;;
    mosquitto)
      # Generous limits (peer at its best): large per-client queue, no Nagle delay. With
      # persistence on, Mosquitto keeps its defaults: the in-memory state is written to
      # mosquitto.db every autosave_interval (1800 s) and at shutdown, never per message.
      cat >"$dir/mosquitto.conf" <<EOF
listener $BPORT 127.0.0.1
allow_anonymous true
persistence $persistence
persistence_location $dir/
autosave_interval 1800
max_queued_messages 100000
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
EOF
      "$MOSQUITTO" -c "$dir/mosquitto.conf" >"$dir/out.log" 2>&1 &
      ;;
    rumqttd)
      sed "s/@PORT@/$BPORT/" "$ROOT/scripts/bench-rumqttd.toml.in" >"$dir/rumqttd.toml"
      "$RUMQTTD" -q -c "$dir/rumqttd.toml" >"$dir/out.log" 2>&1 &
      ;;
  esac
  BPID=$!
  BLOG=$dir/out.log
  if ! wait_port "$BPORT"; then
    log "$name did not start listening on port $BPORT; its output:"
    tail -n 20 "$dir/out.log" >&2 || true
    stop_broker
    return 1
  fi
}

scenario_args() {
  case $1 in
    qos0) echo "pubsub --pubs $PUBS --subs $SUBS --topics $TOPICS --qos 0 --payload $PAYLOAD --window $WINDOW --secs $DURATION --drain-secs $DRAIN" ;;
    qos1) echo "pubsub --pubs $PUBS --subs $SUBS --topics $TOPICS --qos 1 --payload $PAYLOAD --window $WINDOW --secs $DURATION --drain-secs $DRAIN" ;;
    fanout) echo "fanout --subs $FANOUT_SUBS --qos 0 --payload $PAYLOAD --window $WINDOW --secs $DURATION --drain-secs $DRAIN" ;;
    fanin) echo "fanin --pubs $FANIN_PUBS --qos 0 --payload $PAYLOAD --window $FANIN_WINDOW --secs $DURATION --drain-secs $DRAIN" ;;
    qos1-persistent) echo "pubsub --pubs $PUBS --subs $SUBS --topics $TOPICS --qos 1 --payload $PAYLOAD --window $WINDOW --persistent --secs $DURATION --drain-secs $DRAIN" ;;
    latency) echo "pubsub --pubs $PUBS --subs $SUBS --topics $TOPICS --qos $LAT_QOS --payload $PAYLOAD --rate $LAT_RATE --secs $DURATION --drain-secs $DRAIN" ;;
    conn) echo "conn --connections $CONN_N --hold-secs $CONN_HOLD" ;;
    *) return 1 ;;
  esac
}

# Runs case $1 against broker $2 in round $3 and appends its JSON line to $RESULTS.
run_one() {
  local case=$1 broker=$2 round=$3 args line
  args=$(scenario_args "$case") || { log "unknown scenario $case"; exit 1; }
  line=""
  if start_broker "$broker" "$case"; then
    # shellcheck disable=SC2086 # word splitting of $args is intended
    line=$(timeout $((DURATION + DRAIN + 300)) "$BENCH" --port "$BPORT" --broker-pid "$BPID" \
      --label "$broker" $args 2>>"$GEN_LOG" || true)
    if ! kill -0 "$BPID" 2>/dev/null; then
      log "$broker exited during $case; its output:"
      tail -n 20 "$BLOG" >&2 || true
    fi
    stop_broker
  fi
  python3 - "$case" "$broker" "$round" "$line" >>"$RESULTS" <<'PY'
import json, sys
case, broker, rnd, line = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
try:
    d = json.loads(line)
except ValueError:
    d = {"scenario": None, "broker": broker, "failed": True}
d = {"case": case, "round": rnd, **d}
print(json.dumps(d))
PY
  python3 - "$RESULTS" <<'PY' >&2
import json, sys
d = json.loads(open(sys.argv[1]).read().splitlines()[-1])
keys = ["received_per_sec", "p99_us", "loss", "rss_per_conn_bytes", "connect_rate",
        "broker_cpu_secs", "broker_peak_rss_kb", "gen_cpu_util", "errors"]
shown = " ".join(f"{k}={d[k]}" for k in keys if d.get(k) is not None)
print(f"bench:   {d['case']:8} round {d['round']} {d.get('broker', '?'):10} "
      + ("FAILED" if d.get("failed") else shown))
PY
  sleep 1
}

log "machine: $(nproc) cores, $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "brokers: ${ORDER[*]}; scenarios: $SCENARIOS; rounds: $ROUNDS; duration: $DURATION s"
log "results: $RESULTS"
# Brokers taking part in case $1, in order: the persistent case runs fubar twice (strict and
# relaxed durability) and leaves rumqttd out (no disk persistence).
case_brokers() {
  local b
  for b in "${ORDER[@]}"; do
    if [ "$1" = "qos1-persistent" ]; then
      case $b in
        fubar) echo "fubar-strict fubar-relaxed" ;;
        rumqttd) ;;
        *) echo "$b" ;;
      esac
    else
      echo "$b"
    fi
  done
}

for case in $SCENARIOS; do
  read -r -a CASE_ORDER <<<"$(case_brokers "$case" | tr '\n' ' ')"
  if [ "$case" = "qos1-persistent" ] && [[ " ${ORDER[*]} " == *" rumqttd "* ]]; then
    log "qos1-persistent: rumqttd n/a (no disk persistence)"
  fi
  for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
      brokers=("${CASE_ORDER[@]}")
    else
      brokers=()
      for ((i = ${#CASE_ORDER[@]} - 1; i >= 0; i--)); do brokers+=("${CASE_ORDER[$i]}"); done
    fi
    for broker in "${brokers[@]}"; do
      run_one "$case" "$broker" "$round"
    done
  done
done

table "$RESULTS"
echo
echo "results: $RESULTS"

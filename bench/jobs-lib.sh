# What bench/sync-dispatch, bench/backup-throughput and bench/backup-burst share (sourced, not run): a fresh
# database, a private NATS prefix, a storage directory, the platforms' emulation (the listbackup-emulators crate
# as a process, bench/platform_emulator.rs), the service, and the clean-up of all of it.
#
# The sourcing script sets NAME (for messages) and COMMAND (echoed in the report) before sourcing, then calls
# jobs_setup once its arguments are parsed. Everything the run creates is removed on exit, even on failure:
# every database it created and every JetStream stream of its NATS prefixes (`<PREFIX>_*`: the events, the
# backup queue, the delivery advisories).
#
# PROCESSES (the scripts' --processes) picks how the service runs: `split` is `listbackup api` (API, projector,
# relay, sagas) beside WORKERS (default 1) `listbackup worker` processes (the backups), as deployed at scale;
# `serve` is everything in one process; `auto` (the default) is `split` when the binary has both subcommands.
# PLATFORM (default `stripe`) is the platform the service is pointed at the emulation for
# (LISTBACKUP_PLATFORM_<ID>_API_URL); RATE_LIMIT (default `unlimited`) is the service's
# LISTBACKUP_PLATFORM_<ID>_RATE_LIMIT for it; SERVICE_ENV (an array of NAME=value) adds settings; EMULATOR_ARGS
# (an array) adds arguments to `platform_emulator serve`; EMULATED (an array, default PLATFORM alone) lists the
# platforms the emulation is started for (use_platform switches between them). An OAuth-only platform the
# emulation's authorization server serves (QuickBooks) gets the service's OAuth client settings pointed at it,
# and its connection is made through the service's own OAuth flow (platform_connection).

die() { echo "$NAME: $*" >&2; exit 1; }
say() { echo "$NAME: $*" >&2; }
usage() { sed -n '2,/^[^#]/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
is_count() { [[ "$1" =~ ^[0-9]+$ ]]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
sql() { psql -qXAt -v ON_ERROR_STOP=1 -d "$DB" "$@"; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

PGHOST=127.0.0.1
PGPORT=5432
PGUSER=root
export PGHOST PGPORT PGUSER
NATS_URL=${NATS_URL:-nats://127.0.0.1:4222}
DB=""            # the current run's database (fresh_namespace), lb_bench_<random>
DATABASE_URL=""
NATS_PREFIX=""   # the current run's NATS prefix, lbbench_<random>
CREATED_DBS=()       # every database this run created, dropped on exit
STREAM_PREFIXES=()   # `<PREFIX>_` of every NATS prefix this run used, its streams deleted on exit
WORK=$(mktemp -d -t "$NAME.XXXXXX")
STORAGE="$WORK/storage"
# BENCH_PROFILE=debug runs unoptimised binaries (a machine where a release build cannot be afforded); every
# report says which profile ran. Default: release.
BENCH_PROFILE=${BENCH_PROFILE:-release}
case "$BENCH_PROFILE" in release|debug) ;; *) echo "BENCH_PROFILE is release or debug" >&2; exit 2 ;; esac
BIN="$ROOT/target/$BENCH_PROFILE/listbackup"
EMULATOR="$ROOT/target/$BENCH_PROFILE/examples/platform_emulator"
LOADJOBS="$ROOT/target/$BENCH_PROFILE/examples/load_jobs"
# One master key for the whole run: a restarted service must still open the credentials sealed before.
MASTER_KEY=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
LISTBACKUP_JWT_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
export LISTBACKUP_JWT_SECRET
PROCESSES=${PROCESSES:-auto}
WORKERS=${WORKERS:-1}
PLATFORM=${PLATFORM:-stripe}
RATE_LIMIT=${RATE_LIMIT:-unlimited}
SERVICE_ENV=()
EMULATOR_ARGS=()
EMULATED=()
SERVER_PID=""   # the process serving the API (`serve` or `api`)
WORKER_PIDS=()  # the `listbackup worker` processes, in split mode
WORKER_PID=""   # the first of them
BACKUP_PID=""   # the process that runs backups: WORKER_PID in split mode, else SERVER_PID
EMULATOR_PID=""
EMULATOR_URL=""  # the emulation's root: /_emulator/… and every platform's prefix below it
API_URL=""       # PLATFORM's API base URL in the emulation

stop_pid() {  # pid: SIGTERM, up to 10 s, then SIGKILL
  local pid=$1
  [ -n "$pid" ] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_server() {
  local pid
  for pid in "${WORKER_PIDS[@]}"; do stop_pid "$pid"; done
  stop_pid "$SERVER_PID"
  SERVER_PID=""
  WORKER_PIDS=()
  WORKER_PID=""
  BACKUP_PID=""
}

# A new database and NATS prefix for the next service processes (the previous ones stay until
# release_namespaces or the exit).
fresh_namespace() {
  local suffix
  suffix=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
  DB="lb_bench_$suffix"
  DATABASE_URL="postgres://$PGUSER@$PGHOST:$PGPORT/$DB"
  NATS_PREFIX="lbbench_$suffix"
  psql -qX -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $DB" >/dev/null
  CREATED_DBS+=("$DB")
  STREAM_PREFIXES+=("$(echo "$NATS_PREFIX" | tr '[:lower:]-' '[:upper:]_')_")
  say "database $DB, NATS prefix $NATS_PREFIX"
}

# Deletes the JetStream streams of every prefix used so far and drops every database created so far (the
# service processes must be stopped first).
release_namespaces() {
  local prefix db
  for prefix in "${STREAM_PREFIXES[@]}"; do
    # Absent if the service never got that far; the prefix is the run's alone (random), so nothing else matches.
    if [ -x "$LOADJOBS" ]; then
      "$LOADJOBS" delete-nats-streams "$prefix" --nats-url "$NATS_URL" >/dev/null 2>&1 \
        || say "could not delete the NATS streams $prefix*: delete them by hand"
    else
      say "no $LOADJOBS to delete the NATS streams $prefix* with: delete them by hand"
    fi
  done
  STREAM_PREFIXES=()
  for db in "${CREATED_DBS[@]}"; do
    psql -qX -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 \
      || say "could not drop database $db: drop it by hand"
  done
  CREATED_DBS=()
}

jobs_cleanup() {
  local status=$?
  stop_server
  stop_pid "$EMULATOR_PID"
  release_namespaces
  rm -rf "$WORK"
  exit "$status"
}
trap jobs_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
  local candidate
  for _ in $(seq 1 50); do
    candidate=$((20000 + RANDOM % 40000))
    if ! port_open "$candidate"; then echo "$candidate"; return 0; fi
  done
  die "no free port found"
}

# Services, database, release build, the emulator.
jobs_setup() {
  for tool in cargo curl jq psql gzip; do
    command -v "$tool" >/dev/null || die "$tool is required"
  done
  scripts/ensure-services
  fresh_namespace
  mkdir -p "$STORAGE"
  say "storage $STORAGE"
  say "building ($BENCH_PROFILE)"
  local profile=()
  [ "$BENCH_PROFILE" = release ] && profile=(--release)
  cargo build "${profile[@]}" --locked --bin listbackup --example platform_emulator --example load_jobs
  local has_split=no
  if "$BIN" api --help >/dev/null 2>&1 && "$BIN" worker --help >/dev/null 2>&1; then has_split=yes; fi
  case "$PROCESSES" in
    auto) if [ "$has_split" = yes ]; then PROCESSES=split; else PROCESSES=serve; fi ;;
    split) [ "$has_split" = yes ] || die "this listbackup has no \`api\` and \`worker\` subcommands: use --processes serve" ;;
    serve) ;;
    *) die "--processes is auto, split or serve, not '$PROCESSES'" ;;
  esac
  if [ "$PROCESSES" = split ]; then
    SERVICE_DESCRIPTION="$BENCH_PROFILE \`listbackup api\` (API, projector, relay to JetStream, sagas) and \`listbackup worker\` (backups), two processes"
    BACKUP_PROCESS="\`listbackup worker\`"
  else
    SERVICE_DESCRIPTION="$BENCH_PROFILE \`listbackup serve\` (API, projector, relay to JetStream, sagas and the backup worker in one process)"
    BACKUP_PROCESS="\`listbackup serve\`"
  fi
  say "service: $PROCESSES"
  start_emulator
}

start_emulator() {
  local platform args=()
  for platform in "${EMULATED[@]:-$PLATFORM}"; do args+=(--platform "$platform"); done
  "$EMULATOR" serve --port 0 "${args[@]}" "${EMULATOR_ARGS[@]}" >"$WORK/emulator.out" 2>"$WORK/emulator.log" &
  EMULATOR_PID=$!
  local port=""
  for _ in $(seq 1 100); do
    kill -0 "$EMULATOR_PID" 2>/dev/null || { cat "$WORK/emulator.log" >&2; die "the platform emulator exited"; }
    port=$(head -n 1 "$WORK/emulator.out" 2>/dev/null | jq -r '.port // empty' 2>/dev/null || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || die "the platform emulator did not say which port it listens on"
  EMULATOR_URL="http://127.0.0.1:$port"
  use_platform "$PLATFORM"
  say "platform emulation on $EMULATOR_URL (pid $EMULATOR_PID)"
}

# Points what follows (connections, the service started next) at platform $1 of the running emulation.
use_platform() {
  PLATFORM=$1
  API_URL=$(head -n 1 "$WORK/emulator.out" | jq -r --arg p "$PLATFORM" '.apiUrls[$p] // empty')
  [ -n "$API_URL" ] || die "the emulation was not started for $PLATFORM"
}

# POST /_emulator/<what> with a JSON body: the emulation's own control endpoints (not a platform's).
emulator_control() {
  local what=$1 body=$2 status
  status=$(curl -s -o "$WORK/control.out" -w '%{http_code}' -X POST "$EMULATOR_URL/_emulator/$what" \
    -H 'content-type: application/json' -d "$body")
  [ "$status" = 204 ] || die "the emulator refused /_emulator/$what ($status): $(cat "$WORK/control.out")"
}

# What a benchmark of PLATFORM with $1 records uses, from the catalog (`platform_emulator plan`): the data type
# (DATA_TYPE if set, else the platform's first listed one) and credentials of the right shape.
platform_plan() {
  "$EMULATOR" plan --platform "$PLATFORM" --records "$1" ${DATA_TYPE:+--data-type "$DATA_TYPE"} \
    || die "no benchmark plan for $PLATFORM"
}

# The service's OAuth client settings for PLATFORM when the emulation's authorization server serves it (one
# NAME=value a line; nothing otherwise). The public URL is the service's own: the browser's redirect lands there.
oauth_env() {
  local oauth id=${PLATFORM^^}
  oauth=$(head -n 1 "$WORK/emulator.out" | jq -c --arg p "$PLATFORM" '.oauth[$p] // empty')
  [ -n "$oauth" ] || return 0
  echo "LISTBACKUP_PLATFORM_${id}_AUTH_URL=$(jq -r .authUrl <<<"$oauth")"
  echo "LISTBACKUP_PLATFORM_${id}_TOKEN_URL=$(jq -r .tokenUrl <<<"$oauth")"
  echo "LISTBACKUP_PLATFORM_${id}_CLIENT_ID=$(jq -r .clientId <<<"$oauth")"
  echo "LISTBACKUP_PLATFORM_${id}_CLIENT_SECRET=$(jq -r .clientSecret <<<"$oauth")"
  echo "LISTBACKUP_PUBLIC_URL=$BASE_URL"
}

run_listbackup() {  # subcommand: starts it in the background with the run's settings
  # RATE_LIMIT defaults to `unlimited`, lifting the connector's budget for the platform (Stripe's: 25 requests/s,
  # its test-mode limit): the throughput benchmarks measure what the service costs, not the policy that paces it.
  local oauth=()
  mapfile -t oauth < <(oauth_env)
  env DATABASE_URL="$DATABASE_URL" NATS_URL="$NATS_URL" LISTBACKUP_NATS_PREFIX="$NATS_PREFIX" \
    LISTBACKUP_BIND="127.0.0.1:$PORT" LISTBACKUP_MASTER_KEY="$MASTER_KEY" \
    LISTBACKUP_STORAGE_URL="file://$STORAGE" \
    "LISTBACKUP_PLATFORM_${PLATFORM^^}_API_URL=$API_URL" "LISTBACKUP_PLATFORM_${PLATFORM^^}_RATE_LIMIT=$RATE_LIMIT" \
    "${oauth[@]}" RUST_LOG=warn "${SERVICE_ENV[@]}" \
    "$BIN" "$1" >>"$WORK/server.log" 2>&1 &
}

# Starts fresh service processes (see PROCESSES) and waits until the API is ready.
start_server() {
  PORT=$(free_port)
  BASE_URL="http://127.0.0.1:$PORT"
  if [ "$PROCESSES" = split ]; then run_listbackup api; else run_listbackup serve; fi
  SERVER_PID=$!
  local ready=no
  for _ in $(seq 1 300); do  # 60 s: the first start runs the migrations
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 50 "$WORK/server.log" >&2; die "the server exited during start-up"; }
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/health/ready")" = 200 ]; then ready=yes; break; fi
    sleep 0.2
  done
  [ "$ready" = yes ] || { tail -n 50 "$WORK/server.log" >&2; die "GET /health/ready did not answer 200 within 60 s"; }
  if [ "$PROCESSES" = split ]; then
    local pid
    for _ in $(seq 1 "$WORKERS"); do
      run_listbackup worker
      WORKER_PIDS+=("$!")
    done
    WORKER_PID=${WORKER_PIDS[0]}
    BACKUP_PID=$WORKER_PID
    # No endpoint says a worker is subscribed; its consumer starts from the stream's first message anyway,
    # so nothing queued meanwhile is lost. The pause lets its start-up settle before memory is read.
    sleep 2
    for pid in "${WORKER_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null || { tail -n 50 "$WORK/server.log" >&2; die "listbackup worker exited during start-up"; }
    done
    say "listbackup api on $BASE_URL (pid $SERVER_PID), listbackup worker (pid ${WORKER_PIDS[*]})"
  else
    BACKUP_PID=$SERVER_PID
    say "listbackup serve on $BASE_URL (pid $SERVER_PID)"
  fi
}

token() { "$BIN" token --account bench --user bench --role owner; }

# A connection of PLATFORM whose data type (see platform_plan) holds $1 records in the emulation: its credentials
# accepted and the data set seeded there first; checked with POST /connections/{id}/test. Prints its id.
# An OAuth-only platform (the plan says `"oauth": true`; its credentials are what the flow will yield) is
# connected through the service's OAuth flow, as a user's browser would: POST /connections/oauth/start, the
# authorization URL (the emulation's authorization server consents and redirects), then the redirect delivered
# to GET /connections/oauth/callback, whose 201 names the connection.
platform_connection() {
  local records=$1 plan credentials token id test
  plan=$(platform_plan "$records")
  credentials=$(jq -c .credentials <<<"$plan")
  emulator_control accept "$(jq -nc --arg p "$PLATFORM" --argjson c "$credentials" '{platform: $p, credentials: $c}')"
  emulator_control seed "$(jq -nc --arg p "$PLATFORM" --arg t "$(jq -r .dataType <<<"$plan")" --argjson n "$records" \
    '{platform: $p, dataType: $t, records: $n}')"
  token=$(token)
  if [ "$(jq -r '.oauth // false' <<<"$plan")" = true ]; then
    id=$(oauth_connection "$token" "bench $records")
  else
    id=$(curl -sf -X POST "$BASE_URL/connections" -H "authorization: Bearer $token" \
      -H 'content-type: application/json' \
      -d "$(jq -nc --arg p "$PLATFORM" --arg n "bench $records" --argjson c "$credentials" \
        '{platformId: $p, name: $n, credentials: $c}')" \
      | jq -r .connectionId) || die "could not create a $PLATFORM connection"
  fi
  [ -n "$id" ] && [ "$id" != null ] || die "could not create a $PLATFORM connection"
  test=$(curl -sf -X POST "$BASE_URL/connections/$id/test" -H "authorization: Bearer $token")
  [ "$(jq -r .ok <<<"$test")" = true ] || die "the connection test against the emulator failed: $test"
  echo "$id"
}

# oauth_connection TOKEN NAME: the OAuth flow of PLATFORM through the service; prints the connection's id.
oauth_connection() {
  local token=$1 name=$2 started authorization redirect status
  started=$(curl -s -X POST "$BASE_URL/connections/oauth/start" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' \
    -d "$(jq -nc --arg p "$PLATFORM" --arg n "$name" '{platformId: $p, name: $n}')")
  authorization=$(jq -r '.authorizationUrl // empty' <<<"$started")
  [ -n "$authorization" ] || die "POST /connections/oauth/start for $PLATFORM: $started"
  # The authorization server consents at once: its 302 names the service's callback.
  redirect=$(curl -s -o /dev/null -w '%{redirect_url}' "$authorization")
  case "$redirect" in
    "$BASE_URL"/connections/oauth/callback\?*) ;;
    *) die "the $PLATFORM authorization server did not redirect to the callback: '$redirect'" ;;
  esac
  status=$(curl -s -o "$WORK/callback.out" -w '%{http_code}' "$redirect")
  [ "$status" = 201 ] || die "GET /connections/oauth/callback for $PLATFORM answered $status: $(cat "$WORK/callback.out")"
  jq -r .connectionId "$WORK/callback.out"
}

# A Stripe connection whose key (`sk_test_bench_<N>`) sees $1 customers in the emulation.
stripe_connection() {
  PLATFORM=stripe DATA_TYPE=customers platform_connection "$1"
}

# /proc/<pid>/status fields in MiB (VmRSS: now; VmHWM: the process's peak so far); empty once it has exited.
mem_mib() { awk -v k="$2:" '$1 == k {printf "%.1f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || true; }
# CPU seconds (user + system) the process has used so far; 0 once it has exited.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$1/stat" 2>/dev/null || echo 0
}
# CPU seconds of every service process (API and worker).
service_cpu_seconds() {
  local total=0 pid
  for pid in $SERVER_PID "${WORKER_PIDS[@]}"; do
    total=$(awk -v a="$total" -v b="$(cpu_seconds "$pid")" 'BEGIN{printf "%.2f", a + b}')
  done
  echo "$total"
}

machine_facts() {
  local cpu memory
  cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
  memory=$(awk '/^MemTotal:/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)
  echo "$(nproc) CPUs ($cpu), $memory, PostgreSQL $(sql -c 'SHOW server_version'), $(uname -sr);" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (working tree may differ)"
}

# Writes $WORK/section.md into $OUTPUT as the section headed by $1, replacing an earlier one and keeping
# every other section; does nothing when OUTPUT is empty (--no-write).
write_section() {
  local heading=$1
  cat "$WORK/section.md" >&2
  [ -n "$OUTPUT" ] || return 0
  mkdir -p "$(dirname "$OUTPUT")"
  if [ -f "$OUTPUT" ]; then
    awk -v h="$heading" '/^## /{skip = ($0 == h)} !skip' "$OUTPUT" >"$WORK/rest.md"
  else
    printf '# Benchmarks\n' >"$WORK/rest.md"
  fi
  { cat "$WORK/rest.md"; echo; cat "$WORK/section.md"; } | cat -s >"$OUTPUT"
  say "wrote the \"$heading\" section of $OUTPUT"
}

#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker + controller) for development
# and tests, without Docker or the distribution tarball: the broker's jars come from
# Maven Central through the throw-away POM next to this script, and run with
# `java -cp 'lib/*' kafka.Kafka server.properties`. Everything binds to 127.0.0.1.
#
# Usage: deploy/local/kafka.sh {install|start|stop|status|kill|reset}
#
#   install  ensure Java 17+ and Maven (apt-get if missing), resolve the jars into
#            $CCI_LOCAL/kafka/<version>/lib (skipped when already complete)
#   start    reuse a broker that already answers on 127.0.0.1:$KAFKA_PORT, otherwise
#            install, format the data dir once, start in the background, wait until ready
#   stop     SIGTERM, wait up to $KAFKA_STOP_TIMEOUT s, then SIGKILL; ok if not running
#   status   exit 0 if the broker answers, 1 if not
#   kill     SIGKILL (fault tests); a later `start` recovers from the data dir
#   reset    stop and delete the data dir (with KAFKA_SECURITY=sasl_ssl: the whole state dir,
#            credentials and certificates included)
#
# A second, secure broker runs with KAFKA_SECURITY=sasl_ssl, beside the plain one and from the
# same jars: SASL/SCRAM-SHA-512 over TLS on 127.0.0.1:9094 (controller 9095), ACLs enforced
# (StandardAuthorizer, super user admin, nothing allowed without an ACL), its state in
# $KAFKA_SECURE_DIR. Its first start writes there, readable by the owner only:
#   credentials/admin.password   the admin's SCRAM password (random)
#   tls/ca.pem, tls/broker.pem   a CA and the broker's certificate (python -m streams.local_tls)
#   admin.env                    KAFKA_BOOTSTRAP and CCI_* settings that connect as admin
#                                (names the password file; holds no password)
# `cci acls --apply --users-dir DIR` then creates the stages' users and their ACLs (`make
# broker-secure` does, with DIR=$KAFKA_SECURE_DIR/users).
#
# Environment (all optional):
#   KAFKA_BOOTSTRAP        external cluster; start/stop/kill/reset then do nothing (plaintext only)
#   KAFKA_SECURITY         plaintext (default) or sasl_ssl
#   CCI_LOCAL              state root (default: <repo>/.local)
#   KAFKA_SECURE_DIR       state of the sasl_ssl broker (default: $CCI_LOCAL/kafka-secure)
#   CCI_PYTHON             python with `cryptography`, for the certificates (default: .venv's)
#   KAFKA_VERSION          broker version (default: kafka.version in pom.xml)
#   KAFKA_PORT             client listener port (default 9092; 9094 with sasl_ssl)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default 9093; 9095 with sasl_ssl)
#   KAFKA_DATA_DIR         log.dirs (default: $CCI_LOCAL/kafka/data, $KAFKA_SECURE_DIR/data)
#   KAFKA_HEAP_OPTS        default "-Xms256m -Xmx1g"
#   KAFKA_JVM_PERFORMANCE_OPTS, KAFKA_OPTS   extra JVM options (as in Kafka's scripts)
#   KAFKA_START_TIMEOUT    seconds to wait for start-up (default 90)
#   KAFKA_STOP_TIMEOUT     seconds to wait for a clean stop before SIGKILL (default 30)
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/../.." && pwd -P)
readonly SCRIPT_DIR REPO_ROOT

readonly HOST=127.0.0.1
readonly POM=$SCRIPT_DIR/pom.xml
readonly LOG4J_CONFIG=$SCRIPT_DIR/log4j2.yaml
readonly STARTED_MESSAGE='Kafka Server started'

CCI_LOCAL=${CCI_LOCAL:-$REPO_ROOT/.local}
mkdir -p -- "$CCI_LOCAL"
CCI_LOCAL=$(cd -- "$CCI_LOCAL" && pwd -P)

KAFKA_SECURITY=${KAFKA_SECURITY:-plaintext}
if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
    readonly TEMPLATE=$SCRIPT_DIR/server-secure.properties.in
    KAFKA_PORT=${KAFKA_PORT:-9094}
    KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9095}
    STATE_DIR=${KAFKA_SECURE_DIR:-$CCI_LOCAL/kafka-secure}
    mkdir -p -- "$STATE_DIR"
    STATE_DIR=$(cd -- "$STATE_DIR" && pwd -P)
else
    readonly TEMPLATE=$SCRIPT_DIR/server.properties.in
    KAFKA_PORT=${KAFKA_PORT:-9092}
    KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
    STATE_DIR=$CCI_LOCAL/kafka
fi
readonly STATE_DIR
CCI_PYTHON=${CCI_PYTHON:-$REPO_ROOT/.venv/bin/python}

DEFAULT_VERSION=$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM")
KAFKA_VERSION=${KAFKA_VERSION:-$DEFAULT_VERSION}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}
KAFKA_JVM_PERFORMANCE_OPTS=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}
KAFKA_OPTS=${KAFKA_OPTS:-}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}

# The jars (KAFKA_ROOT) are shared by both brokers; each has its own state (STATE_DIR).
readonly KAFKA_ROOT=$CCI_LOCAL/kafka
readonly DIST_DIR=$KAFKA_ROOT/$KAFKA_VERSION
readonly LIB_DIR=$DIST_DIR/lib
readonly MARKER=$DIST_DIR/.installed
readonly INSTALL_LOCK_FILE=$KAFKA_ROOT/.lock
readonly DATA_DIR=${KAFKA_DATA_DIR:-$STATE_DIR/data}
readonly CONFIG_FILE=$STATE_DIR/server.properties
readonly PID_FILE=$STATE_DIR/kafka.pid
readonly LOCK_FILE=$STATE_DIR/.lock
if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
    readonly LOG_DIR=$STATE_DIR/logs
else
    readonly LOG_DIR=$CCI_LOCAL/logs
fi
readonly LOG_FILE=$LOG_DIR/kafka.log
readonly TLS_DIR=$STATE_DIR/tls
readonly CREDENTIALS_DIR=$STATE_DIR/credentials
readonly ADMIN_PASSWORD_FILE=$CREDENTIALS_DIR/admin.password
readonly ADMIN_ENV=$STATE_DIR/admin.env
readonly USERS_DIR=$STATE_DIR/users # where `make broker-secure` keeps the principals' passwords

JAVA=
APT_UPDATED=
TMP_LIB=

log() { printf 'kafka: %s\n' "$*"; }
warn() { printf 'kafka: %s\n' "$*" >&2; }
die() {
    printf 'kafka: error: %s\n' "$*" >&2
    exit 1
}

cleanup() { if [[ -n $TMP_LIB ]]; then rm -rf -- "$TMP_LIB"; fi; }
trap cleanup EXIT

# A path relative to the repository when it lies inside it (for messages).
show_path() {
    case $1 in
        "$REPO_ROOT"/*) printf '%s' "${1#"$REPO_ROOT"/}" ;;
        *) printf '%s' "$1" ;;
    esac
}

# Microseconds since the epoch, and "N.Ns" since a given value.
now_us() {
    local t=${EPOCHREALTIME/[.,]/}
    printf '%s' "$((10#$t))"
}
elapsed() {
    local us=$(($(now_us) - $1))
    printf '%d.%ds' "$((us / 1000000))" "$((us % 1000000 / 100000))"
}

validate() {
    [[ $KAFKA_SECURITY == plaintext || $KAFKA_SECURITY == sasl_ssl ]] ||
        die "KAFKA_SECURITY must be plaintext or sasl_ssl, got '$KAFKA_SECURITY'"
    [[ -n $KAFKA_VERSION ]] || die "no Kafka version (set KAFKA_VERSION or kafka.version in $(show_path "$POM"))"
    local name
    for name in KAFKA_PORT KAFKA_CONTROLLER_PORT KAFKA_START_TIMEOUT KAFKA_STOP_TIMEOUT; do
        [[ ${!name} =~ ^[0-9]+$ ]] || die "$name must be a number, got '${!name}'"
    done
    ((KAFKA_PORT != KAFKA_CONTROLLER_PORT)) || die "KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ"
}

# KAFKA_BOOTSTRAP names the cluster the pipeline uses; the secure broker is always this one.
external() { [[ -n ${KAFKA_BOOTSTRAP:-} && $KAFKA_SECURITY == plaintext ]]; }

# Serialise start/stop/kill/reset/install across concurrent callers (e.g. test workers).
take_lock() {
    mkdir -p -- "$STATE_DIR"
    command -v flock >/dev/null 2>&1 || return 0
    exec 9>"$LOCK_FILE"
    flock -w 300 9 || die "timed out waiting for $(show_path "$LOCK_FILE")"
}

# The secure broker installs into the plain one's jars: take that lock too while it does.
take_install_lock() {
    [[ $INSTALL_LOCK_FILE != "$LOCK_FILE" ]] || return 0
    mkdir -p -- "$KAFKA_ROOT"
    command -v flock >/dev/null 2>&1 || return 0
    exec 8>"$INSTALL_LOCK_FILE"
    flock -w 300 8 || die "timed out waiting for $(show_path "$INSTALL_LOCK_FILE")"
}

# --- liveness ----------------------------------------------------------------------

# Does something accept TCP connections on host:port? (bash's /dev/tcp)
port_open() {
    local host=$1 port=$2
    if command -v timeout >/dev/null 2>&1; then
        # shellcheck disable=SC2016 # $1/$2 expand in the child bash, by design
        timeout 3 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
    else
        (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
    fi
}

# Does any thread of pid still run? The main thread of a JVM can already be a zombie
# while other threads are still exiting and the listening sockets are still open, so
# every thread is checked, not only the process.
alive() {
    local pid=$1 task stat
    kill -0 "$pid" 2>/dev/null || return 1
    for task in "/proc/$pid/task/"*/stat; do
        { stat=$(<"$task"); } 2>/dev/null || continue
        stat=${stat##*) }
        case ${stat%% *} in
            Z | X | x) ;;
            *) return 0 ;;
        esac
    done
    return 1
}

# Is pid a broker this script started with this config (guards against pid reuse and
# against touching any other Kafka on the machine)?
is_ours() {
    local pid=$1 cmd
    alive "$pid" || return 1
    { cmd=$(tr '\0' '\n' <"/proc/$pid/cmdline"); } 2>/dev/null || return 1
    [[ $cmd == *$'\n'kafka.Kafka$'\n'"$CONFIG_FILE"* ]]
}

# Print the pid of our running broker, or nothing.
our_pid() {
    local pid
    [[ -f $PID_FILE ]] || return 0
    pid=$(<"$PID_FILE")
    if [[ $pid =~ ^[0-9]+$ ]] && is_ours "$pid"; then
        printf '%s' "$pid"
    fi
}

# The client port in the rendered config, i.e. of the broker last started from it.
running_port() {
    [[ -f $CONFIG_FILE ]] || return 0
    sed -n 's|^advertised\.listeners=[A-Z_]*://[^:]*:\([0-9]*\).*|\1|p' "$CONFIG_FILE"
}

# Wait up to $2 seconds for pid to exit.
wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while alive "$pid"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# --- install -----------------------------------------------------------------------

java_major() {
    local out
    out=$("$1" -version 2>&1) || return 1
    [[ $out =~ version\ \"([0-9]+)(\.([0-9]+))? ]] || return 1
    if [[ ${BASH_REMATCH[1]} == 1 ]]; then
        printf '%s' "${BASH_REMATCH[3]:-0}"
    else
        printf '%s' "${BASH_REMATCH[1]}"
    fi
}

# Set JAVA to a Java 17+ executable: $JAVA_HOME, then `java` on PATH, then /usr/lib/jvm.
find_java() {
    local candidate major
    local -a candidates=()
    if [[ -n ${JAVA_HOME:-} ]]; then candidates+=("$JAVA_HOME/bin/java"); fi
    if command -v java >/dev/null 2>&1; then candidates+=("$(command -v java)"); fi
    for candidate in /usr/lib/jvm/*/bin/java; do
        candidates+=("$candidate")
    done
    for candidate in "${candidates[@]}"; do
        [[ -x $candidate ]] || continue
        major=$(java_major "$candidate") || continue
        if ((major >= 17)); then
            JAVA=$candidate
            return 0
        fi
    done
    return 1
}

apt_install() {
    command -v apt-get >/dev/null 2>&1 || die "missing: $* (needs Java 17+ and Maven); no apt-get here, install them yourself"
    local -a sudo=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null 2>&1 || die "missing: $*; not root and no sudo, install them yourself"
        sudo=(sudo)
    fi
    log "installing $* with apt-get"
    # Slim Debian images lack this directory and the JRE's postinst then fails.
    "${sudo[@]}" mkdir -p /usr/share/man/man1
    if [[ -z $APT_UPDATED ]]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
        APT_UPDATED=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

# Ensure Java 17+ (always) and Maven (when $1 is "mvn"), with one apt-get run.
ensure_tools() {
    local -a need=()
    find_java || need+=(openjdk-17-jre-headless)
    if [[ ${1:-} == mvn ]] && ! command -v mvn >/dev/null 2>&1; then need+=(maven); fi
    if ((${#need[@]})); then apt_install "${need[@]}"; fi
    find_java || die "no Java 17+ found (checked \$JAVA_HOME, PATH, /usr/lib/jvm)"
    if [[ ${1:-} == mvn ]]; then
        command -v mvn >/dev/null 2>&1 || die "mvn not found after installing maven"
    fi
}

install_stamp() {
    local sum
    sum=$(sha256sum <"$POM")
    printf '%s %s' "$KAFKA_VERSION" "${sum%% *}"
}

installed() {
    [[ -f $MARKER && $(<"$MARKER") == "$(install_stamp)" ]] || return 1
    compgen -G "$LIB_DIR/kafka_*-$KAFKA_VERSION.jar" >/dev/null
}

lib_summary() {
    local -a jars=("$LIB_DIR"/*.jar)
    printf '%d jars, %s' "${#jars[@]}" "$(du -sh -- "$LIB_DIR" | cut -f1)"
}

do_install() {
    if installed; then
        ensure_tools
        return 0
    fi
    take_install_lock
    if installed; then
        ensure_tools
        return 0
    fi
    ensure_tools mvn
    local t0 out
    t0=$(now_us)
    mkdir -p -- "$DIST_DIR"
    log "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $(show_path "$LIB_DIR")"
    TMP_LIB=$(mktemp -d "$DIST_DIR/lib.tmp.XXXXXX")
    # Run Maven on a copy of the POM so nothing (e.g. target/) lands in the source tree.
    cp -- "$POM" "$TMP_LIB/pom.xml"
    # Output is kept (Maven 3.8 prints stray colour codes even with -q -B) and shown on failure.
    if ! out=$(mvn -q -B -Dstyle.color=never -f "$TMP_LIB/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$TMP_LIB/lib" -DincludeScope=runtime 2>&1); then
        printf '%s\n' "$out" >&2
        die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see above)"
    fi
    compgen -G "$TMP_LIB/lib/kafka_*-$KAFKA_VERSION.jar" >/dev/null ||
        die "Maven finished but no kafka_*-$KAFKA_VERSION.jar was copied"
    rm -rf -- "$LIB_DIR"
    mv -- "$TMP_LIB/lib" "$LIB_DIR"
    rm -rf -- "$TMP_LIB"
    TMP_LIB=
    printf '%s\n' "$(install_stamp)" >"$MARKER"
    log "installed $KAFKA_VERSION ($(lib_summary)) in $(elapsed "$t0")"
}

# --- start -------------------------------------------------------------------------

render_config() {
    local text tmp
    text=$(<"$TEMPLATE")
    text=${text//@KAFKA_PORT@/"$KAFKA_PORT"}
    text=${text//@KAFKA_CONTROLLER_PORT@/"$KAFKA_CONTROLLER_PORT"}
    text=${text//@KAFKA_LOG_DIRS@/"$DATA_DIR"}
    if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
        text=${text//@TLS_DIR@/"$TLS_DIR"}
        text=${text//@ADMIN_PASSWORD@/"$(<"$ADMIN_PASSWORD_FILE")"}
    fi
    if [[ $text =~ @[A-Z_]+@ ]]; then
        die "unsubstituted placeholder ${BASH_REMATCH[0]} in $(show_path "$TEMPLATE")"
    fi
    # mktemp creates the file 0600: the secure broker's config holds the admin password.
    tmp=$(mktemp "$STATE_DIR/server.properties.XXXXXX")
    printf '%s\n' "$text" >"$tmp"
    mv -f -- "$tmp" "$CONFIG_FILE"
}

# The secure broker's secrets, made once: the admin password, the certificates, and the
# settings that connect as admin (which name the password file and do not hold it).
prepare_secrets() {
    [[ $KAFKA_SECURITY == sasl_ssl ]] || return 0
    (
        umask 077
        mkdir -p -- "$CREDENTIALS_DIR" "$TLS_DIR"
        if [[ ! -s $ADMIN_PASSWORD_FILE ]]; then
            # Hex: nothing to escape in the JAAS line or the SCRAM argument.
            od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$ADMIN_PASSWORD_FILE"
        fi
        if [[ ! -s $TLS_DIR/ca.pem || ! -s $TLS_DIR/broker.pem ]]; then
            [[ -x $CCI_PYTHON ]] || die "no $CCI_PYTHON for the certificates: run 'make setup' or set CCI_PYTHON"
            PYTHONPATH=$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH} "$CCI_PYTHON" -m streams.local_tls "$TLS_DIR" ||
                die "could not write the certificates (python -m streams.local_tls needs 'cryptography': make setup)"
        fi
        printf '%s\n' \
            "KAFKA_BOOTSTRAP=$HOST:$KAFKA_PORT" \
            "CCI_SECURITY_PROTOCOL=SASL_SSL" \
            "CCI_SASL_MECHANISM=SCRAM-SHA-512" \
            "CCI_SASL_USERNAME=admin" \
            "CCI_SASL_PASSWORD_FILE=$ADMIN_PASSWORD_FILE" \
            "CCI_SSL_CAFILE=$TLS_DIR/ca.pem" >"$ADMIN_ENV"
    )
}

# JAVA_BASE: java, our system properties, then $KAFKA_OPTS (so it can override them).
java_base() {
    local -a extra
    read -r -a extra <<<"$KAFKA_OPTS"
    JAVA_BASE=("$JAVA" "-Dlog4j2.configurationFile=$LOG4J_CONFIG" "-Dkafka.log.file=$LOG_FILE" "${extra[@]}")
}

# Format the data dir once; the cluster id then lives in its meta.properties.
format_storage() {
    [[ -f $DATA_DIR/meta.properties ]] && return 0
    if [[ -d $DATA_DIR ]] && [[ -n $(ls -A -- "$DATA_DIR") ]]; then
        die "$(show_path "$DATA_DIR") is not empty but has no meta.properties; run '$0 reset' to start afresh"
    fi
    mkdir -p -- "$DATA_DIR"
    local -a JAVA_BASE
    java_base
    local cluster_id out
    cluster_id=$("${JAVA_BASE[@]}" -cp "$LIB_DIR/*" kafka.tools.StorageTool random-uuid) ||
        die "kafka.tools.StorageTool random-uuid failed"
    local -a format=(kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG_FILE" --standalone)
    if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
        # The admin's SCRAM credential goes into the first metadata: the stages' users are
        # created through the broker, as admin. The password reaches the tool in a Java
        # argument file, not on its command line, which any local user can read.
        local args_file
        args_file=$(mktemp "$STATE_DIR/format.args.XXXXXX")
        printf '%s\n' "${format[@]}" --add-scram \
            "SCRAM-SHA-512=[name=admin,password=$(<"$ADMIN_PASSWORD_FILE")]" >"$args_file"
        format=("@$args_file")
    fi
    if ! out=$("${JAVA_BASE[@]}" -cp "$LIB_DIR/*" "${format[@]}" 2>&1); then
        printf '%s\n' "$out" >&2
        rm -f -- "${args_file:-}"
        rm -rf -- "$DATA_DIR"
        die "formatting $(show_path "$DATA_DIR") failed"
    fi
    rm -f -- "${args_file:-}"
    log "formatted $(show_path "$DATA_DIR") (cluster id $cluster_id)"
}

fail_start() {
    local pid=$1 reason=$2
    warn "error: $reason"
    if [[ -s $LOG_FILE ]]; then
        warn "last lines of $(show_path "$LOG_FILE"):"
        tail -n 40 -- "$LOG_FILE" | sed 's/^/    /' >&2
    else
        warn "$(show_path "$LOG_FILE") is empty"
    fi
    if [[ -n $pid ]] && alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_exit "$pid" 10 || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f -- "$PID_FILE"
    exit 1
}

# Ready = the listener accepts connections and this run's log says the server started.
wait_ready() {
    local pid=$1 deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while :; do
        alive "$pid" || fail_start "" "the broker (pid $pid) exited during start-up"
        if port_open "$HOST" "$KAFKA_PORT" && grep -qF -- "$STARTED_MESSAGE" "$LOG_FILE" 2>/dev/null; then
            return 0
        fi
        ((SECONDS < deadline)) ||
            fail_start "$pid" "the broker did not answer on $HOST:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s (KAFKA_START_TIMEOUT)"
        sleep 0.25
    done
}

do_start() {
    local pid t0
    pid=$(our_pid)
    if port_open "$HOST" "$KAFKA_PORT"; then
        if [[ -n $pid ]]; then
            log "already answering on $HOST:$KAFKA_PORT (pid $pid) - reusing"
        else
            log "something already answers on $HOST:$KAFKA_PORT (not started by this script) - reusing it"
        fi
        return 0
    fi
    if [[ -n $pid ]]; then
        local port
        port=$(running_port)
        if [[ $port != "$KAFKA_PORT" ]]; then
            die "the broker of $(show_path "$STATE_DIR") (pid $pid) runs on $HOST:${port:-?}, not $HOST:$KAFKA_PORT; stop it first or use another CCI_LOCAL"
        fi
        log "pid $pid is still starting; waiting for it"
        wait_ready "$pid"
        log "started $KAFKA_VERSION on $HOST:$KAFKA_PORT (pid $pid, logs $(show_path "$LOG_FILE"))"
        return 0
    fi
    rm -f -- "$PID_FILE"
    if port_open "$HOST" "$KAFKA_CONTROLLER_PORT"; then
        die "controller port $HOST:$KAFKA_CONTROLLER_PORT is already in use (set KAFKA_CONTROLLER_PORT)"
    fi

    do_install
    t0=$(now_us)
    mkdir -p -- "$LOG_DIR"
    # One log per run (the previous one is kept as kafka.log.1), so the readiness check
    # only sees this run's lines.
    if [[ -s $LOG_FILE ]]; then mv -f -- "$LOG_FILE" "$LOG_FILE.1"; fi
    prepare_secrets
    render_config
    format_storage

    local -a JAVA_BASE heap perf
    java_base
    read -r -a heap <<<"$KAFKA_HEAP_OPTS"
    read -r -a perf <<<"$KAFKA_JVM_PERFORMANCE_OPTS"
    # setsid + nohup: the broker outlives this shell, its session and its terminal.
    # fd 9 (the lock) is closed so the broker does not hold it.
    (
        cd -- "$STATE_DIR"
        exec nohup setsid "${JAVA_BASE[0]}" "${heap[@]}" "${perf[@]}" "${JAVA_BASE[@]:1}" -cp "$LIB_DIR/*" \
            kafka.Kafka "$CONFIG_FILE" >>"$LOG_FILE" 2>&1 </dev/null 9>&-
    ) &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
    wait_ready "$pid"
    log "started $KAFKA_VERSION on $HOST:$KAFKA_PORT in $(elapsed "$t0") (pid $pid, logs $(show_path "$LOG_FILE"))"
}

# --- stop / kill / reset / status --------------------------------------------------

do_stop() {
    local pid t0
    pid=$(our_pid)
    if [[ -z $pid ]]; then
        rm -f -- "$PID_FILE"
        log "not running"
        if port_open "$HOST" "$KAFKA_PORT"; then
            log "note: something else answers on $HOST:$KAFKA_PORT (not started by this script); left alone"
        fi
        return 0
    fi
    t0=$(now_us)
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_exit "$pid" "$KAFKA_STOP_TIMEOUT"; then
        warn "pid $pid still running after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    fi
    rm -f -- "$PID_FILE"
    log "stopped (pid $pid) in $(elapsed "$t0")"
}

do_kill() {
    local pid
    pid=$(our_pid)
    if [[ -z $pid ]]; then
        rm -f -- "$PID_FILE"
        log "not running"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_exit "$pid" 10 || die "pid $pid survived SIGKILL"
    rm -f -- "$PID_FILE"
    log "killed (pid $pid, SIGKILL)"
}

do_reset() {
    do_stop
    rm -rf -- "$DATA_DIR"
    log "deleted $(show_path "$DATA_DIR")"
    if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
        # A new data dir forgets every user: the old credentials would only mislead.
        rm -rf -- "$CREDENTIALS_DIR" "$USERS_DIR" "$TLS_DIR" "$ADMIN_ENV" "$CONFIG_FILE"
        log "deleted the credentials and certificates of $(show_path "$STATE_DIR")"
    fi
}

do_status() {
    local target host port pid
    if external; then
        target=${KAFKA_BOOTSTRAP%%,*}
        target=${target#*://}
        host=${target%:*}
        port=${target##*:}
        if [[ $port =~ ^[0-9]+$ ]] && port_open "$host" "$port"; then
            log "external cluster $KAFKA_BOOTSTRAP answers on $host:$port"
            return 0
        fi
        log "external cluster $KAFKA_BOOTSTRAP does not answer on $target"
        return 1
    fi
    pid=$(our_pid)
    if port_open "$HOST" "$KAFKA_PORT"; then
        if [[ -n $pid ]]; then
            log "answering on $HOST:$KAFKA_PORT (pid $pid, $KAFKA_VERSION, logs $(show_path "$LOG_FILE"))"
        else
            log "answering on $HOST:$KAFKA_PORT (not started by this script)"
        fi
        return 0
    fi
    if [[ -n $pid && $(running_port) != "$KAFKA_PORT" ]]; then
        log "not answering on $HOST:$KAFKA_PORT (pid $pid of this state dir runs on port $(running_port))"
    elif [[ -n $pid ]]; then
        log "not answering on $HOST:$KAFKA_PORT (pid $pid is running: starting or hung)"
    else
        log "not answering on $HOST:$KAFKA_PORT"
    fi
    return 1
}

usage() {
    sed -n '2,/^set -euo pipefail$/{/^set /d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

main() {
    local cmd=${1:-}
    case $cmd in
        -h | --help | help)
            usage
            return 0
            ;;
        install | start | stop | status | kill | reset) ;;
        *)
            usage >&2
            return 2
            ;;
    esac
    validate
    if external && [[ $cmd != status && $cmd != install ]]; then
        log "external cluster configured (KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP); '$cmd' does nothing"
        return 0
    fi
    case $cmd in
        status) do_status ;;
        install)
            take_lock
            do_install
            log "$KAFKA_VERSION ready in $(show_path "$LIB_DIR") ($(lib_summary)), java $JAVA"
            ;;
        start)
            take_lock
            do_start
            if [[ $KAFKA_SECURITY == sasl_ssl ]]; then
                log "admin settings in $(show_path "$ADMIN_ENV") (set -a; . $(show_path "$ADMIN_ENV"); set +a)"
            fi
            ;;
        stop)
            take_lock
            do_stop
            ;;
        kill)
            take_lock
            do_kill
            ;;
        reset)
            take_lock
            do_reset
            ;;
        *) return 2 ;;
    esac
}

main "$@"

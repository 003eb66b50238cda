#!/usr/bin/env bash
# Run one Spark Thrift Server (a real HiveServer2) for interop tests, from the pyspark wheel that
# scripts/setup-spark.sh installs into $REPO/.venv-spark.
#
#   spark-thrift-server.sh start --port P --mode sasl|nosasl|http|kerberos|ldap --dir D [--hiveconf K=V] [--conf K=V]
#                                [--keytab F --principal P --krb5-conf F [--proxyuser U]...]   # kerberos mode
#                                [--ldap-url ldap://H:P --ldap-basedn DN]                       # ldap mode
#                                                                           # prints the server's PID
#   spark-thrift-server.sh stop --dir D
#
# Everything the server writes (derby metastore, warehouse, scratch and temp dirs, logs, pid) lives under D,
# so several servers can run side by side with distinct ports and dirs.
# Modes: sasl   = hive.server2.authentication=NONE: SASL PLAIN, any user/password, binary transport;
#        nosasl = unframed binary TBinaryProtocol, no SASL;
#        http   = HTTP transport, path /cliservice, needs a Basic Authorization header (any user/password).
#                 NOTE: in http mode Hive's Jetty ignores the bind host and listens on ALL interfaces.
#        kerberos = SASL GSSAPI, QOP auth, binary transport: the server logs in as --principal (hive/localhost@REALM)
#                 from --keytab itself; --krb5-conf is the realm's krb5.conf (Java ignores KRB5_CONFIG). Each
#                 --proxyuser U may impersonate anyone (hive.server2.proxy.user): hadoop.proxyuser.U.hosts/groups=*
#                 in a core-site.xml under D/hadoop-conf (HADOOP_CONF_DIR).
#        ldap   = SASL PLAIN, binary transport, each user/password checked by a simple bind to the directory at
#                 --ldap-url as uid=<user>,<--ldap-basedn> (hive.server2.authentication=LDAP). Each --proxyuser U
#                 (an LDAP user too) may run sessions as anyone with hive.server2.proxy.user, as in kerberos mode.
# Env: SPARK_TS_MEMORY (driver heap, default 512m), SPARK_TS_TIMEOUT (start timeout s, default 120),
#      SPARK_TS_JAVA_OPTS (extra JVM options), SPARK_TS_NICE (niceness, default 10),
#      SPARK_TS_CDS=0 (don't map the class-data archive), SPARK_TS_STOP_TIMEOUT (s before SIGKILL, default 20).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv-spark"

die() { echo "spark-thrift-server: $*" >&2; exit 1; }
usage() { die "usage: $0 start --port P --mode sasl|nosasl|http|kerberos|ldap --dir D [--hiveconf K=V]... [--conf K=V]... [--keytab F --principal P --krb5-conf F [--proxyuser U]...] [--ldap-url U --ldap-basedn DN] | stop --dir D"; }

cmd="${1:-}"; [[ $# -gt 0 ]] && shift
port="" mode="" dir="" extra=() keytab="" principal="" krb5_conf="" proxyusers=() ldap_url="" ldap_basedn=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --port) port="${2:?}"; shift 2 ;;
        --mode) mode="${2:?}"; shift 2 ;;
        --dir)  dir="${2:?}";  shift 2 ;;
        --hiveconf|--conf) extra+=("$1" "${2:?}"); shift 2 ;;   # passed on to spark-submit, after ours
        --keytab) keytab="${2:?}"; shift 2 ;;
        --principal) principal="${2:?}"; shift 2 ;;
        --krb5-conf) krb5_conf="${2:?}"; shift 2 ;;
        --proxyuser) proxyusers+=("${2:?}"); shift 2 ;;
        --ldap-url) ldap_url="${2:?}"; shift 2 ;;
        --ldap-basedn) ldap_basedn="${2:?}"; shift 2 ;;
        *) usage ;;
    esac
done
[[ -n "$dir" ]] || usage
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
[[ "$dir" != *[[:space:]]* ]] || die "--dir must not contain whitespace (it goes into JVM options)"
pidfile="$dir/server.pid"
log="$dir/server.log"

# PID from the pid file, only if that process is still our JVM (guards against a reused pid).
running_pid() {
    [[ -f "$pidfile" ]] || return 1
    local pid; pid="$(cat "$pidfile")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-Dhs2test.dir=$dir" || return 1
    echo "$pid"
}

stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$pidfile"; echo "spark-thrift-server: not running ($dir)"; return 0
    fi
    kill -TERM "$pid"
    # a clean shutdown takes ~1-2 s (releases the derby lock); dumping a CDS archive at exit takes longer
    local t="${SPARK_TS_STOP_TIMEOUT:-20}" i
    for (( i = 0; i < t * 10; i++ )); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "spark-thrift-server: stopped $pid"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
    echo "spark-thrift-server: killed $pid (no clean exit in $t s)"
}

# core-site.xml for kerberos and ldap modes: Hadoop's authentication (kerberos|simple) and a proxyuser rule
# per --proxyuser.
write_core_site() {
    local conf="$1" hadoop_auth="$2" u
    mkdir -p "$conf"
    {
        echo '<?xml version="1.0"?>'
        echo '<configuration>'
        echo "  <property><name>hadoop.security.authentication</name><value>$hadoop_auth</value></property>"
        for u in "${proxyusers[@]}"; do
            echo "  <property><name>hadoop.proxyuser.$u.hosts</name><value>*</value></property>"
            echo "  <property><name>hadoop.proxyuser.$u.groups</name><value>*</value></property>"
        done
        echo '</configuration>'
    } > "$conf/core-site.xml"
}

start() {
    [[ "$port" =~ ^[0-9]+$ ]] || usage
    local auth transport
    case "$mode" in
        sasl)   auth=NONE;   transport=binary ;;
        nosasl) auth=NOSASL; transport=binary ;;
        http)   auth=NONE;   transport=http ;;
        kerberos) auth=KERBEROS; transport=binary ;;
        ldap)   auth=LDAP;   transport=binary ;;
        *) usage ;;
    esac
    if [[ "$mode" == ldap ]]; then
        [[ -n "$ldap_url" && -n "$ldap_basedn" ]] || die "ldap mode needs --ldap-url and --ldap-basedn"
    fi
    if [[ "$mode" == kerberos ]]; then
        [[ -n "$keytab" && -n "$principal" && -n "$krb5_conf" ]] || die "kerberos mode needs --keytab, --principal and --krb5-conf"
        [[ -r "$keytab" ]] || die "keytab $keytab is not readable"
        [[ -r "$krb5_conf" ]] || die "krb5.conf $krb5_conf is not readable"
    fi
    local spark_home="$VENV/lib/python3.11/site-packages/pyspark"
    [[ -x "$spark_home/bin/spark-submit" ]] \
        || spark_home="$("$VENV/bin/python" -c 'import os,pyspark;print(os.path.dirname(pyspark.__file__))' 2>/dev/null)" \
        || die "pyspark not installed in $VENV: run scripts/setup-spark.sh"
    [[ -x "$spark_home/bin/spark-submit" ]] || die "no spark-submit under $spark_home: run scripts/setup-spark.sh"
    command -v java >/dev/null || die "java not found"

    if pid="$(running_pid)"; then die "already running as pid $pid in $dir (stop it first)"; fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is already in use"; fi

    # scratch/local must exist up front or every CloseSession logs "Unable to access pipeout files"
    mkdir -p "$dir/tmp" "$dir/warehouse" "$dir/operation_logs" \
        "$dir/scratch/hdfs" "$dir/scratch/local" "$dir/scratch/resources" "$dir/scratch/querylog"
    : > "$log"

    local mem="${SPARK_TS_MEMORY:-512m}"
    local jvm_opts=(
        -Dhs2test.dir="$dir"                  # marker so `stop` only kills the JVM it started
        -Djava.io.tmpdir="$dir/tmp"           # JVM/netty/derby temp files stay under D, not /tmp
        -Dderby.system.home="$dir"            # derby.log goes to D, not the working directory
        -XX:+UseSerialGC                      # 1 core, small heap: least GC threads and memory overhead
        -Xms64m                               # default initial heap is 1/64 of RAM (384 MiB here): -80 MiB RSS
        -XX:TieredStopAtLevel=1               # C1 only: faster startup, less JIT memory; fine for test queries
        -XX:ReservedCodeCacheSize=64m         # C1-only needs a small code cache (default 240m reserved)
        -XX:-UsePerfData                      # no /tmp/hsperfdata_<user>/<pid> file outside D (jps won't list it)
        -Xss512k                              # Hive/Jetty/netty start many threads; 1 MiB stacks are not needed
    )
    # AppCDS: setup-spark.sh dumps the classes a server loads into one archive; mapping it halves startup
    # (~7 s -> ~3.7 s to accept). A stale archive (other JDK, other options) is ignored with a warning in the log.
    local cds="$VENV/spark-thrift-server.jsa"
    if [[ -n "${SPARK_TS_CDS_DUMP:-}" ]]; then
        jvm_opts+=(-XX:ArchiveClassesAtExit="$SPARK_TS_CDS_DUMP")   # used by setup-spark.sh only
    elif [[ -f "$cds" && "${SPARK_TS_CDS:-1}" != 0 ]]; then
        jvm_opts+=(-XX:SharedArchiveFile="$cds")
    fi
    if [[ "$mode" == kerberos ]]; then
        # Java's Kerberos reads only this file; subject credentials come from the server's own keytab login.
        jvm_opts+=(-Djava.security.krb5.conf="$krb5_conf" -Djavax.security.auth.useSubjectCredsOnly=true)
    fi
    # shellcheck disable=SC2206
    jvm_opts+=(${SPARK_TS_JAVA_OPTS:-})       # extra JVM options from the caller (no spaces inside one option)
    local hiveconf=(
        hive.server2.transport.mode="$transport"
        hive.server2.thrift.port="$port"
        hive.server2.thrift.http.port="$port"
        hive.server2.thrift.bind.host=127.0.0.1         # binary modes listen on loopback only
        hive.server2.authentication="$auth"
        hive.server2.thrift.min.worker.threads=2         # default 5 idle threads per server
        # own derby metastore per server: two servers cannot share one embedded derby db
        "javax.jdo.option.ConnectionURL=jdbc:derby:;databaseName=$dir/metastore_db;create=true"
        hive.metastore.warehouse.dir="$dir/warehouse"
        hive.exec.scratchdir="$dir/scratch/hdfs"          # default /tmp/hive
        hive.exec.local.scratchdir="$dir/scratch/local"   # default /tmp/<user>
        hive.downloaded.resources.dir="$dir/scratch/resources"   # default /tmp/<session>_resources
        hive.server2.logging.operation.log.location="$dir/operation_logs"   # default /tmp/<user>/operation_logs; kept
                                                         # enabled: disabling it makes FetchResults(fetchType=1 log) fail
        hive.querylog.location="$dir/scratch/querylog"   # default /tmp/<user>
    )
    local args=(
        --class org.apache.spark.sql.hive.thriftserver.HiveThriftServer2
        --name "hs2-test-$port"
        --master 'local[1]'                               # one core, in-process executor
        --driver-memory "$mem"                            # >= ~470 MiB or Spark refuses to start (UnifiedMemoryManager)
        --driver-java-options "${jvm_opts[*]}"
        --conf spark.ui.enabled=false                     # no web UI (would bind 4040+ on all interfaces)
        --conf spark.sql.shuffle.partitions=1             # default 200 tasks per shuffle
        --conf spark.default.parallelism=1
        --conf spark.driver.host=127.0.0.1                # hostname resolves to loopback: pin it explicitly
        --conf spark.driver.bindAddress=127.0.0.1         # driver RPC + block manager (random ports) on loopback
        --conf spark.local.dir="$dir/tmp"                 # block manager / shuffle dirs (default /tmp)
        --conf spark.sql.warehouse.dir="$dir/warehouse"
        --conf spark.sql.catalogImplementation=hive
        --conf spark.sql.ui.retainedExecutions=10
        --conf spark.sql.thriftServer.ui.retainedStatements=10   # history kept for the (disabled) UI; bounds memory
        --conf spark.sql.thriftServer.ui.retainedSessions=10
        --conf spark.executor.heartbeatInterval=60s       # local mode: nothing to detect, fewer wakeups
        --conf spark.cleaner.periodicGC.interval=600min   # no forced full GC every 30 min
    )
    if [[ "$mode" == kerberos ]]; then
        hiveconf+=(
            hive.server2.authentication.kerberos.principal="$principal"
            hive.server2.authentication.kerberos.keytab="$keytab"
            hive.server2.thrift.sasl.qop=auth       # what Impala speaks, and all hs2-proxy accepts
        )
        args+=(--conf spark.hadoop.hadoop.security.authentication=kerberos)
        write_core_site "$dir/hadoop-conf" kerberos
    fi
    if [[ "$mode" == ldap ]]; then
        hiveconf+=(
            hive.server2.authentication.ldap.url="$ldap_url"
            hive.server2.authentication.ldap.baseDN="$ldap_basedn"   # binds as uid=<user>,<baseDN>
        )
        write_core_site "$dir/hadoop-conf" simple
    fi
    local h; for h in "${hiveconf[@]}"; do args+=(--hiveconf "$h"); done
    args+=("${extra[@]}" spark-internal)

    local t0=$EPOCHREALTIME
    (
        cd "$dir"    # anything written relative to cwd (metastore_db, spark-warehouse) lands in D
        export SPARK_HOME="$spark_home" SPARK_LOCAL_IP=127.0.0.1
        export SPARK_LAUNCHER_OPTS="-XX:-UsePerfData"   # spark-submit's short launcher JVM: no /tmp/hsperfdata file
        export SPARK_LOG_DIR="$dir" SPARK_PID_DIR="$dir"
        if [[ "$mode" == kerberos ]]; then
            # core-site.xml (authentication, proxy users) on the classpath; the login's tickets in a private ccache
            export HADOOP_CONF_DIR="$dir/hadoop-conf" KRB5CCNAME="FILE:$dir/server.ccache"
        elif [[ "$mode" == ldap ]]; then
            export HADOOP_CONF_DIR="$dir/hadoop-conf"   # the proxyuser rules
        fi
        exec setsid nice -n "${SPARK_TS_NICE:-10}" "$spark_home/bin/spark-submit" "${args[@]}" \
            </dev/null >>"$log" 2>&1
    ) &
    local pid=$!   # spark-submit and spark-class exec into the JVM, so this is the server's pid
    echo "$pid" > "$pidfile"

    local timeout="${SPARK_TS_TIMEOUT:-120}" deadline
    deadline=$(( $(date +%s) + timeout ))
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "spark-thrift-server: server exited before listening on $port; log tail ($log):" >&2
            tail -n 40 "$log" >&2; rm -f "$pidfile"; exit 1
        fi
        if (( $(date +%s) >= deadline )); then
            echo "spark-thrift-server: port $port not accepting after ${timeout}s; log tail ($log):" >&2
            tail -n 40 "$log" >&2; stop >&2; exit 1
        fi
        sleep 0.2
    done
    awk -v a="$t0" -v b="$EPOCHREALTIME" -v m="$mode" -v p="$port" -v l="$log" \
        'BEGIN { printf "spark-thrift-server: %s mode accepting on port %s after %.1fs (log %s)\n", m, p, b - a, l }' >&2
    echo "$pid"
}

case "$cmd" in
    start) start ;;
    stop)  stop ;;
    *) usage ;;
esac

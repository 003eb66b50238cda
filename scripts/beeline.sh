#!/usr/bin/env bash
# Hive beeline (Hive JDBC 2.3, a strict real HS2 client) from the pyspark wheel in $REPO/.venv-spark.
#   scripts/beeline.sh -u 'jdbc:hive2://127.0.0.1:P/default' -n user -p pw -e 'select 1'       # SASL PLAIN
#   scripts/beeline.sh -u 'jdbc:hive2://127.0.0.1:P/default;auth=noSasl' -n user -e 'select 1'  # NOSASL (-n is
#       required even here: without it Hive JDBC 2.3 fails with "Null user")
#   scripts/beeline.sh -u 'jdbc:hive2://127.0.0.1:P/default;transportMode=http;httpPath=cliservice' -n u -p p -e ...
# Quirk: with -e and --silent=true, beeline 2.3 prints its prompt "0: jdbc:hive2://...> " before the first row on
# stdout (without --silent, ". . . .>" continuation prompts); -f FILE avoids it. For row counts use
#   --outputformat=tsv2 --showHeader=false --silent=true  and count lines (the first one carries the prompt).
# Hive JDBC 2.3 sends one GetOperationStatus per row it hands out (100,000 rows = 100,000 extra RPCs, ~10 s),
# so beeline row-heavy runs are dominated by round-trip latency: a good proxy stress, a poor throughput test.
# Beeline keeps ~/.beeline/history; BEELINE_JAVA_OPTS=-Dbeeline.rcfile=DIR moves it.
# Runs java directly (not the wheel's bin/beeline, which first starts Spark's launcher JVM).
# Kerberos: -u '...;principal=impala/HOST@REALM' with KRB5CCNAME set, BEELINE_CONF_DIR=<dir with a core-site.xml
#   saying hadoop.security.authentication=kerberos> and BEELINE_JAVA_OPTS=-Djava.security.krb5.conf=<krb5.conf>
#   (Java ignores KRB5_CONFIG).
# Env: BEELINE_JAVA_OPTS adds JVM options; BEELINE_CONF_DIR goes first on the classpath (Hadoop's *-site.xml).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv-spark"
spark_home="$VENV/lib/python3.11/site-packages/pyspark"
[[ -d "$spark_home/jars" ]] \
    || spark_home="$("$VENV/bin/python" -c 'import os,pyspark;print(os.path.dirname(pyspark.__file__))' 2>/dev/null)" \
    || { echo "beeline: pyspark not installed in $VENV: run scripts/setup-spark.sh" >&2; exit 1; }
[[ -d "$spark_home/jars" ]] || { echo "beeline: no jars under $spark_home" >&2; exit 1; }

opts=(
    -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1   # short-lived client: fast start, small heap
    -XX:-UsePerfData                                     # no /tmp/hsperfdata_<user> file
    -Dlog4j2.level=WARN                                  # log4j2 defaults would print JDBC INFO lines to stderr
)
# jline needs a real terminal; without one (pipes, CI) tell it so, as the wheel's bin/beeline does
[[ -t 0 ]] || opts+=(-Djline.terminal=jline.UnsupportedTerminal)
# shellcheck disable=SC2206
opts+=(${BEELINE_JAVA_OPTS:-})

cp="$spark_home/jars/*"
[[ -z "${BEELINE_CONF_DIR:-}" ]] || cp="$BEELINE_CONF_DIR:$cp"
exec java "${opts[@]}" -cp "$cp" org.apache.hive.beeline.BeeLine "$@"

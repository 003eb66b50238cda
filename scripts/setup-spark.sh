#!/usr/bin/env bash
# Install pyspark (Spark Thrift Server + Hive JDBC/beeline, both shipped in the wheel) into $REPO/.venv-spark,
# verify the classes the tests need, and build an AppCDS archive that halves the Thrift Server's startup.
# Idempotent and fast on rerun (~1 s): stamp files skip pip and the archive build when nothing changed.
# Env: SPARK_SETUP_CDS=0 skips the archive.
set -euo pipefail

PYSPARK_VERSION="4.3.0"   # verified: what PyPI serves as 4.3.x; ships hive-thriftserver and hive-beeline jars

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv-spark"
STAMP="$VENV/.pyspark-version"

die() { echo "setup-spark: $*" >&2; exit 1; }

command -v java >/dev/null || die "java not found (need Java 17+: apt-get install openjdk-17-jre-headless)"
java_major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
[[ "$java_major" =~ ^[0-9]+$ ]] || die "cannot parse 'java -version'"
(( java_major >= 17 )) || die "java $java_major found, Spark 4 needs Java 17+"
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$PYSPARK_VERSION" && -x "$VENV/bin/python" ]]; then
    echo "setup-spark: pyspark $PYSPARK_VERSION already installed in $VENV"
else
    [[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV" || die "cannot create venv $VENV"
    rm -f "$STAMP"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "pyspark==$PYSPARK_VERSION" \
        || die "pip install pyspark==$PYSPARK_VERSION failed"
fi

# One python run: pyspark's version and home, then the jar holding each needed class (jars are zips; the
# likely jar is tried first, so this stays fast).
info="$("$VENV/bin/python" -c '
import pathlib, zipfile, pyspark
home = pathlib.Path(pyspark.__file__).parent
print(pyspark.__version__); print(home)
jars = sorted((home / "jars").glob("*.jar"))
for cls, hint in [("org.apache.spark.sql.hive.thriftserver.HiveThriftServer2", "thriftserver"),
                  ("org.apache.hive.beeline.BeeLine", "beeline"),
                  ("org.apache.hive.jdbc.HiveDriver", "hive-jdbc")]:
    entry, found = cls.replace(".", "/") + ".class", ""
    for j in sorted(jars, key=lambda j: hint not in j.name):
        with zipfile.ZipFile(j) as z:
            if entry in z.NameToInfo:
                found = str(j); break
    print(found)
')" || die "pyspark does not import from $VENV"
{ read -r got; read -r SPARK_HOME; read -r thrift_jar; read -r beeline_jar; read -r jdbc_jar; } <<< "$info"
[[ "$got" == "$PYSPARK_VERSION" ]] || die "pyspark $got installed, expected $PYSPARK_VERSION"
[[ -x "$SPARK_HOME/bin/spark-submit" ]] || die "$SPARK_HOME/bin/spark-submit missing"
[[ -n "$thrift_jar" ]] || die "HiveThriftServer2 not found in $SPARK_HOME/jars: wheel lacks hive-thriftserver"
[[ -n "$beeline_jar" ]] || die "org.apache.hive.beeline.BeeLine not found in $SPARK_HOME/jars"
[[ -n "$jdbc_jar" ]] || die "org.apache.hive.jdbc.HiveDriver not found in $SPARK_HOME/jars"

echo "$PYSPARK_VERSION" > "$STAMP"
echo "setup-spark: pyspark $PYSPARK_VERSION (java $java_major)"
echo "  SPARK_HOME        $SPARK_HOME"
echo "  HiveThriftServer2 $thrift_jar"
echo "  BeeLine           $beeline_jar"
echo "  Hive JDBC driver  $jdbc_jar"

# AppCDS archive for scripts/spark-thrift-server.sh (which maps it when present). Rebuilt when pyspark, the
# JDK or that script changes. Costs ~30-40 s once: a throw-away server runs a few statements and dumps every
# class it loaded when it exits.
CDS="$VENV/spark-thrift-server.jsa"
CDS_STAMP="$VENV/.cds-key"
cds_key="$PYSPARK_VERSION|$(java -version 2>&1 | tr '\n' ' ')|$(sha256sum "$REPO/scripts/spark-thrift-server.sh" | cut -c1-16)"
if [[ "${SPARK_SETUP_CDS:-1}" == 0 ]]; then
    echo "  CDS archive       skipped (SPARK_SETUP_CDS=0)"
elif [[ -f "$CDS" && -f "$CDS_STAMP" && "$(cat "$CDS_STAMP")" == "$cds_key" ]]; then
    echo "  CDS archive       $CDS (up to date)"
else
    rm -f "$CDS" "$CDS_STAMP"
    work="$(mktemp -d)"
    trap '"$REPO/scripts/spark-thrift-server.sh" stop --dir "$work/sts" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
    port="$("$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    echo "setup-spark: building the CDS archive (throw-away server on 127.0.0.1:$port) ..."
    SPARK_TS_CDS_DUMP="$CDS.tmp" \
        "$REPO/scripts/spark-thrift-server.sh" start --port "$port" --mode sasl --dir "$work/sts" >/dev/null \
        || die "CDS: server did not start"
    "$REPO/scripts/beeline.sh" -u "jdbc:hive2://127.0.0.1:$port/default" -n cds -p cds --silent=true \
        -e 'show databases; select 1; select id, cast(id as string) s from range(1000) order by id desc;' \
        </dev/null >/dev/null 2>"$work/beeline.err" \
        || { cat "$work/beeline.err" >&2; die "CDS: warm-up statements failed"; }
    # the JVM writes the archive while exiting: give it time
    SPARK_TS_STOP_TIMEOUT=180 "$REPO/scripts/spark-thrift-server.sh" stop --dir "$work/sts" >/dev/null
    [[ -s "$CDS.tmp" ]] || { tail -n 20 "$work/sts/server.log" >&2; die "CDS: no archive written"; }
    mv "$CDS.tmp" "$CDS"
    echo "$cds_key" > "$CDS_STAMP"
    echo "  CDS archive       $CDS (built, $(du -m "$CDS" | cut -f1) MiB)"
fi

#!/usr/bin/env bash
# Install Apache ZooKeeper (Debian's `zookeeper` package, 3.8) for the discovery tests. The tests never use
# the system service (Debian's package starts none): tests/common/zookeeper.rs writes its own zoo.cfg on a
# free loopback port into a temp dir and runs
#   java -cp /usr/share/java/zookeeper.jar:<slf4j-log4j12>:<log4j-1.2> org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg
#
# Idempotent and fast on rerun: nothing is installed when the jars are there and the server class loads.
# `apt-get update` runs only when apt does not know the package yet, so a rerun never touches the network.
# Usage: scripts/setup-zookeeper.sh
set -euo pipefail

die() { echo "setup-zookeeper: ERROR: $*" >&2; exit 1; }

# The classpath tests/common/zookeeper.rs uses (keep the two in step).
JARS=(/usr/share/java/zookeeper.jar /usr/share/java/slf4j-log4j12.jar /usr/share/java/log4j-1.2.jar)

ready() {
    for j in "${JARS[@]}"; do [[ -f "$j" ]] || return 1; done
    command -v java >/dev/null || return 1
    java -cp "$(IFS=:; echo "${JARS[*]}")" org.apache.zookeeper.Version 2>/dev/null | grep -q '^3\.'
}

show() {
    local v
    v="$(java -cp "$(IFS=:; echo "${JARS[*]}")" org.apache.zookeeper.Version 2>/dev/null | head -n1)"
    echo "setup-zookeeper: ZooKeeper ${v%%-*} ($(IFS=:; echo "${JARS[*]}"))"
}

if ready; then
    show
    exit 0
fi

command -v apt-get >/dev/null || die "ZooKeeper jars missing and no apt-get to install them (need ${JARS[*]})"
sudo=()
if (( EUID != 0 )); then
    command -v sudo >/dev/null || die "ZooKeeper missing: run as root or: apt-get install zookeeper"
    sudo=(sudo -n)
fi

# Serialize concurrent runs (dpkg takes its own lock, but two `apt-get update`s would race for nothing).
if command -v flock >/dev/null; then
    exec 9<"${BASH_SOURCE[0]}"
    flock 9
fi

known() { [[ -n "$(apt-cache policy zookeeper 2>/dev/null | sed -n 's/^ *Candidate: *//p' | grep -v '(none)')" ]]; }
if ! known; then
    echo "setup-zookeeper: apt-get update (apt does not know zookeeper yet)"
    "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
    known || die "apt knows no zookeeper package even after apt-get update"
fi

# zookeeper depends on default-jre and the jars (libzookeeper-java, libslf4j-java, liblog4j1.2-java).
echo "setup-zookeeper: apt-get install zookeeper"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    zookeeper libslf4j-java liblog4j1.2-java >/dev/null || die "apt-get install zookeeper failed"

ready || die "ZooKeeper still not runnable after apt-get install (need ${JARS[*]} and java)"
show

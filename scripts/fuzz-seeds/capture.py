"""Captures the bytes real HS2 peers exchange through hs2-proxy, for the fuzz corpora (scripts/fuzz-seeds.sh).

Spark Thrift Server (SASL mode) behind one proxy, a mock impalad behind another. Recording relays sit in
front of each proxy (what impyla, beeline and impala-shell send, and the replies they get) and between each
proxy and its backend (Spark's own replies and SASL negotiation, the proxy's probes). Loopback only.

Usage: python capture.py --repo REPO --out DIR --proxy BIN --mock BIN"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from relay import Relay

IMPALA_SCRIPT = "use default;\nset mem_limit=1g;\nselect id from range(3);\nsummary;\nprofile;\nselect 42;\nquit;\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"capture: {what} did not listen on {port} within {timeout:.0f} s")


def run(label, cmd, stdin=None, timeout=180):
    print(f"capture: {label}: {' '.join(cmd)[:160]}", flush=True)
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        sys.exit(f"capture: {label} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")


class Proxy:
    """hs2-proxy in front of `backend`, listening on a free port."""

    def __init__(self, binary, backend_port, transport, work):
        self.port = free_port()
        cmd = [binary, "--listen", f"127.0.0.1:{self.port}", "--backend", f"127.0.0.1:{backend_port}",
               "--backend-transport", transport, "--admin-listen", "off"]
        if transport == "sasl":
            # NOSASL clients go upstream as this user: Spark's PLAIN wants a non-empty password.
            pw = os.path.join(work, "backend-password")
            with open(pw, "w") as f:
                f.write("secret\n")
            cmd += ["--backend-user", "alice", "--backend-password-file", pw]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, "hs2-proxy", 30)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(20)


def spark_peers(a, out, work):
    spark_port = free_port()
    script = os.path.join(a.repo, "scripts/spark-thrift-server.sh")
    sdir = os.path.join(work, "spark")
    run("spark", [script, "start", "--port", str(spark_port), "--mode", "sasl", "--dir", sdir], timeout=200)
    try:
        wait_port(spark_port, "Spark Thrift Server")
        back = Relay("spark-back", ("127.0.0.1", spark_port), out)
        proxy = Proxy(a.proxy, back.port, "sasl", work)
        front = Relay("spark-front", ("127.0.0.1", proxy.port), out)
        py = os.path.join(a.repo, ".venv/bin/python")
        calls = os.path.join(os.path.dirname(__file__), "impyla_calls.py")
        for auth, extra in (("NOSASL", []), ("PLAIN", []), ("PLAIN", ["http"])):
            run(f"impyla {auth} {extra}", [py, calls, "127.0.0.1", str(front.port), auth] + extra)
        beeline = os.path.join(a.repo, "scripts/beeline.sh")
        url = f"jdbc:hive2://127.0.0.1:{front.port}/default"
        for suffix in ("", ";auth=noSasl", ";transportMode=http;httpPath=cliservice"):
            run(f"beeline {suffix}", [beeline, "-u", url + suffix, "-n", "alice", "-p", "secret", "--silent=true",
                                      "-e", "select 1 as one", "-e", "show databases"])
        front.close()
        proxy.stop()
        back.close()
    finally:
        run("spark stop", [script, "stop", "--dir", sdir])


def impala_peers(a, out, work):
    mock_port = free_port()
    mock = subprocess.Popen([a.mock, "--listen", f"127.0.0.1:{mock_port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(mock_port, "mock-impalad", 30)
        back = Relay("impala-back", ("127.0.0.1", mock_port), out)
        proxy = Proxy(a.proxy, back.port, "nosasl", work)
        front = Relay("impala-front", ("127.0.0.1", proxy.port), out)
        shell = os.path.join(a.repo, ".venv/bin/impala-shell")
        hist = f"--history_file={os.path.join(work, 'history')}"
        target = f"127.0.0.1:{front.port}"
        run("impala-shell hs2", [shell, "-i", target, "--protocol=hs2", hist], stdin=IMPALA_SCRIPT)
        run("impala-shell hs2-http", [shell, "-i", target, "--protocol=hs2-http", hist, "-q", "select 1"])
        front.close()
        proxy.stop()
        back.close()
    finally:
        mock.terminate()
        mock.wait(20)


def main():
    p = argparse.ArgumentParser()
    for flag in ("--repo", "--out", "--proxy", "--mock"):
        p.add_argument(flag, required=True)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        impala_peers(a, a.out, work)
        spark_peers(a, a.out, work)
    print(f"capture: {len(os.listdir(a.out))} stream files in {a.out}")


if __name__ == "__main__":
    main()

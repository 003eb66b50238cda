#!/usr/bin/env python3
"""Real impyla as load for the soak (hs2_proxy::soak::python): one cursor per round through the proxy.

Usage:
    python impyla_soak.py HOST PORT USER

Each round: connect with SASL PLAIN, open a cursor (impyla opens a session per cursor), run
`select id from range(N)`, fetch every row and check it, close the cursor (CloseSession) and the connection.
Prints "ok" after each good round and "fail <reason>" after each failed one, one line each, flushed. Runs until
its stdin ends (the soak closes it to stop), then finishes the round and exits 0. Only stdlib and impyla.
"""

import sys
import threading
import time

from impala.dbapi import connect

stopping = threading.Event()


def watch_stdin():
    sys.stdin.read()
    stopping.set()


def one_round(host, port, user, n):
    conn = connect(host=host, port=port, auth_mechanism="PLAIN", user=user, password=user + "-pw", timeout=20)
    try:
        cur = conn.cursor(user=user)
        try:
            cur.execute("select id from range(%d)" % n)
            rows = cur.fetchall()
            if [r[0] for r in rows] != list(range(n)):
                raise ValueError("range(%d) came back with %d wrong rows" % (n, len(rows)))
        finally:
            cur.close()
    finally:
        conn.close()


def main():
    host, port, user = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    threading.Thread(target=watch_stdin, daemon=True).start()
    rnd = 0
    while not stopping.is_set():
        rnd += 1
        try:
            one_round(host, port, user, 1 + (rnd * 37) % 30000)
            print("ok", flush=True)
        except Exception as e:  # every failure is the soak's to judge
            print("fail %s: %s" % (type(e).__name__, str(e).replace("\n", " ")[:300]), flush=True)
            time.sleep(0.2)
        time.sleep(0.05)


if __name__ == "__main__":
    main()

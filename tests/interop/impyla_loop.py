#!/usr/bin/env python3
"""impyla running queries in a loop on one session while its servers restart (tests/migration_spark.rs).

Usage:
    python impyla_loop.py --host H --port P --db DB --partitions N --stop FILE [--auth PLAIN|NOSASL]

One DB-API connection and cursor, the way an application or a notebook keeps them: `USE DB` and
`SET spark.sql.shuffle.partitions=N` once, then, until FILE exists, a query that shows both
(`select current_database(), '${spark.sql.shuffle.partitions}', i`; Spark substitutes the session's value),
all rows fetched, and a short pause (the application's think time). impyla closes each query's
operation once its last row is fetched (`close_finished_queries`), so the session is idle in the pause.

A query that fails, or whose row shows another database or setting, is an error: printed at once as
`error: <i> <what>` and counted. After an error that broke the connection the script connects again and
sets its state again (`reconnects`), as an application's retry would. Ends with one line:
`impyla_loop: queries=Q errors=E state_lost=S reconnects=R`.
"""

import argparse
import os
import sys
import time

THINK_TIME = 0.2


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--auth", default="PLAIN", type=str.upper, choices=["NOSASL", "PLAIN"])
    p.add_argument("--user", default="impyla")
    p.add_argument("--db", required=True)
    p.add_argument("--partitions", required=True)
    p.add_argument("--stop", required=True, help="the loop ends when this file exists")
    p.add_argument("--timeout", type=float, default=60.0, help="socket timeout per RPC, seconds")
    return p.parse_args(argv)


def open_cursor(args):
    from impala.dbapi import connect

    kwargs = dict(host=args.host, port=args.port, auth_mechanism=args.auth, timeout=args.timeout)
    if args.auth == "PLAIN":
        kwargs.update(user=args.user, password=args.user + "-pw")
    conn = connect(**kwargs)
    cur = conn.cursor()
    cur.execute("USE %s" % args.db)
    cur.execute("SET spark.sql.shuffle.partitions=%s" % args.partitions)
    return conn, cur


def one_line(e):
    text = "%s: %s" % (type(e).__name__, e)
    return " ".join(text.split())[:300]


def main():
    args = parse_args()
    counts = dict(queries=0, errors=0, state_lost=0, reconnects=0)
    conn, cur = open_cursor(args)
    print("impyla_loop: ready", flush=True)
    i = 0
    while not os.path.exists(args.stop):
        i += 1
        counts["queries"] += 1
        try:
            cur.execute("select current_database(), '${spark.sql.shuffle.partitions}', %d" % i)
            rows = cur.fetchall()
            if rows != [(args.db, args.partitions, i)]:
                counts["errors"] += 1
                counts["state_lost"] += 1
                print("error: %d state lost: %r" % (i, rows), flush=True)
        except Exception as e:  # every failure a client sees counts
            counts["errors"] += 1
            print("error: %d %s" % (i, one_line(e)), flush=True)
            try:
                conn.close()
            except Exception:
                pass
            try:
                conn, cur = open_cursor(args)
                counts["reconnects"] += 1
            except Exception as e2:
                print("error: %d reconnect failed: %s" % (i, one_line(e2)), flush=True)
        time.sleep(THINK_TIME)
    try:
        cur.close()
        conn.close()
    except Exception as e:
        counts["errors"] += 1
        print("error: close %s" % one_line(e), flush=True)
    print("impyla_loop: " + " ".join("%s=%d" % kv for kv in counts.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

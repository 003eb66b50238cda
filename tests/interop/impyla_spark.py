#!/usr/bin/env python3
"""impyla end to end against a Spark Thrift Server, directly or through hs2-proxy (tests/interop_spark.rs).

Usage:
    python impyla_spark.py --host H --port P --auth NOSASL|PLAIN [--user U --password PW] [--db NAME]

Two halves, both with impyla 0.24 (the version scripts/setup-python.sh pins):
- DB-API: DDL (create database/table, describe), inserts (VALUES and INSERT ... SELECT), aggregates, and
  `SELECT id FROM range(1000000)` fetched completely and compared with 0..999999; then drop everything.
- impyla's raw Thrift client (what Hue and other pooled clients look like on the wire): a session opened on one
  connection that is then closed, a statement run on a second connection, polled on a third, fetched on a
  fourth, closed on a fifth, and CloseSession on a sixth.

Prints one line per check passed, "timing: <name> <seconds>" lines, and a closing
"impyla_spark: N passed, M failed" line. Exits 1 at the first failed check, with the reason on stderr.
"""

import argparse
import sys
import time
import traceback

RANGE_ROWS = 1000000


class CheckFailed(Exception):
    """A check saw something other than what it expected."""


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--auth", required=True, type=str.upper, choices=["NOSASL", "PLAIN"])
    p.add_argument("--user", default="impyla")
    p.add_argument("--password", default="impyla-pw")
    p.add_argument("--db", default="impyla_interop", help="database created and dropped by the DDL checks")
    p.add_argument("--timeout", type=float, default=120.0, help="socket timeout per RPC, seconds")
    return p.parse_args(argv)


def connect_kwargs(args):
    kwargs = dict(host=args.host, port=args.port, auth_mechanism=args.auth, timeout=args.timeout)
    if args.auth == "PLAIN":
        kwargs.update(user=args.user, password=args.password)
    return kwargs


def dbapi_checks(args, timings):
    """Yields (name, function); the functions share one connection and cursor."""
    from impala.dbapi import connect

    state = {}
    db = args.db

    def open_cursor():
        state["conn"] = connect(**connect_kwargs(args))
        state["cur"] = state["conn"].cursor(user=args.user)  # OpenSession
        return "DB-API connect() + cursor() (%s)" % args.auth

    def ddl():
        cur = state["cur"]
        cur.execute("DROP DATABASE IF EXISTS %s CASCADE" % db)
        cur.execute("CREATE DATABASE %s" % db)
        cur.execute("CREATE TABLE %s.t (id BIGINT, name STRING)" % db)
        cur.execute("DESCRIBE %s.t" % db)
        cols = [(r[0], r[1]) for r in cur.fetchall()]
        expect(cols[:2] == [("id", "bigint"), ("name", "string")], "DESCRIBE gave %r" % (cols,))
        cur.execute("SHOW TABLES IN %s" % db)
        names = [r[1] for r in cur.fetchall()]
        expect(names == ["t"], "SHOW TABLES gave %r" % (names,))
        return "DDL: CREATE DATABASE, CREATE TABLE, DESCRIBE, SHOW TABLES"

    def inserts():
        cur = state["cur"]
        cur.execute("INSERT INTO %s.t VALUES (1, 'one'), (2, 'two'), (3, NULL)" % db)
        cur.execute("INSERT INTO %s.t SELECT id + 10, CAST(id AS STRING) FROM range(1000)" % db)
        cur.execute("SELECT count(*), sum(id), count(name) FROM %s.t" % db)
        rows = cur.fetchall()
        expect(rows == [(1003, 6 + sum(range(10, 1010)), 1002)], "aggregates gave %r" % (rows,))
        cur.execute("SELECT id, name FROM %s.t WHERE id < 4 ORDER BY id" % db)
        rows = cur.fetchall()
        expect(rows == [(1, "one"), (2, "two"), (3, None)], "rows gave %r" % (rows,))
        return "inserts: VALUES (with NULL) and INSERT ... SELECT; aggregates and rows read back"

    def big_fetch():
        cur = state["cur"]
        t0 = time.time()
        cur.execute("SELECT id FROM range(%d)" % RANGE_ROWS)
        expect([d[:2] for d in cur.description] == [("id", "BIGINT")], "description %r" % (cur.description,))
        rows = cur.fetchall()
        timings.append(("range_1M_fetch", time.time() - t0))
        expect(len(rows) == RANGE_ROWS, "fetched %d rows, expected %d" % (len(rows), RANGE_ROWS))
        bad = next((i for i, r in enumerate(rows) if r != (i,)), None)
        expect(bad is None, "row %r is %r, expected (%r,)" % (bad, rows[bad] if bad is not None else None, bad))
        return "SELECT id FROM range(%d): every row fetched, in order (%.1fs)" % (RANGE_ROWS, timings[-1][1])

    def drop_and_close():
        cur = state["cur"]
        cur.execute("DROP TABLE %s.t" % db)
        cur.execute("DROP DATABASE %s" % db)
        cur.close()  # CloseSession
        state["conn"].close()
        return "DROP TABLE, DROP DATABASE, CloseSession"

    return [("open", open_cursor), ("ddl", ddl), ("inserts", inserts), ("big fetch", big_fetch),
            ("drop", drop_and_close)]


def raw_checks(args):
    """Hue's pattern with impyla's raw Thrift client: every step on a new connection."""
    from impala.hiveserver2 import connect as raw_connect
    from impala._thrift_gen.TCLIService.ttypes import (
        TCloseOperationReq, TCloseSessionReq, TExecuteStatementReq, TFetchResultsReq, TGetOperationStatusReq,
        TOperationState, TProtocolVersion, TOpenSessionReq, TStatusCode)

    state = {}
    ok_codes = (TStatusCode.SUCCESS_STATUS, TStatusCode.SUCCESS_WITH_INFO_STATUS)

    def call(method, req):
        service = raw_connect(**connect_kwargs(args))  # a new TCP connection (and SASL handshake)
        try:
            resp = getattr(service.client, method)(req)
        finally:
            service.close()
        expect(resp.status.statusCode in ok_codes, "%s failed: %s" % (method, resp.status.errorMessage))
        return resp

    def open_then_close_connection():
        resp = call("OpenSession", TOpenSessionReq(client_protocol=TProtocolVersion.HIVE_CLI_SERVICE_PROTOCOL_V6,
                                                   username=args.user))
        state["session"] = resp.sessionHandle
        time.sleep(0.5)  # Spark closes a session soon after the connection that opened it closes
        return "raw Thrift: OpenSession on connection 1, connection 1 closed"

    def execute_elsewhere():
        resp = call("ExecuteStatement", TExecuteStatementReq(sessionHandle=state["session"], runAsync=True,
                                                             statement="SELECT id * 2 AS x FROM range(5000)"))
        state["op"] = resp.operationHandle
        return "raw Thrift: ExecuteStatement on connection 2"

    def poll_elsewhere():
        for _ in range(600):
            resp = call("GetOperationStatus", TGetOperationStatusReq(operationHandle=state["op"]))
            if resp.operationState == TOperationState.FINISHED_STATE:
                return "raw Thrift: GetOperationStatus on connections 3.. until FINISHED"
            expect(resp.operationState in (TOperationState.INITIALIZED_STATE, TOperationState.RUNNING_STATE,
                                           TOperationState.PENDING_STATE),
                   "operation state %r: %s" % (resp.operationState, resp.errorMessage))
            time.sleep(0.05)
        raise CheckFailed("operation not finished after 30s")

    def fetch_elsewhere():
        values = []
        while True:
            resp = call("FetchResults", TFetchResultsReq(operationHandle=state["op"], orientation=0, maxRows=2000))
            batch = resp.results.columns[0].i64Val.values if resp.results.columns else []
            if not batch:
                break
            values.extend(batch)
        expect(values == [2 * i for i in range(5000)], "fetched %d values, not 0, 2, .. 9998" % len(values))
        return "raw Thrift: FetchResults, each page on a new connection (5000 rows, correct)"

    def close_elsewhere():
        call("CloseOperation", TCloseOperationReq(operationHandle=state["op"]))
        call("CloseSession", TCloseSessionReq(sessionHandle=state["session"]))
        return "raw Thrift: CloseOperation and CloseSession, each on a new connection"

    return [("raw open", open_then_close_connection), ("raw execute", execute_elsewhere),
            ("raw poll", poll_elsewhere), ("raw fetch", fetch_elsewhere), ("raw close", close_elsewhere)]


def main():
    args = parse_args()
    timings = []
    passed = failed = 0
    for name, check in dbapi_checks(args, timings) + raw_checks(args):
        try:
            print("ok: " + check(), flush=True)
            passed += 1
        except Exception as e:  # any failure ends the run: later checks depend on earlier ones
            failed += 1
            print("FAILED check %r: %s: %s" % (name, type(e).__name__, e), file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            break
    for name, seconds in timings:
        print("timing: %s %.2f" % (name, seconds))
    print("impyla_spark: %d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

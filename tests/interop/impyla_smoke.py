#!/usr/bin/env python3
"""Smoke test of impyla's DB-API against an Impala-like HS2 endpoint (our mock impalad, or the proxy in front of it).

Usage:
    python impyla_smoke.py --host H --port P --auth NOSASL|PLAIN [--user U --password PW] [--timeout S]

Run it with the interpreter of the peers' virtualenv (scripts/setup-python.sh creates .venv). It expects the mock
impalad's dialect: `select <int>` -> one BIGINT row; `select id from range(N)` -> BIGINT column `id`, rows 0..N-1;
`set k=v`, `create ...` -> no result set; anything unknown -> error "AnalysisException: ...".

Prints one line per check passed and a closing "impyla_smoke: N passed, M failed" line. Exits 1 at the first failed
check (later checks depend on earlier ones), with the reason on stderr. Only stdlib and impyla are used.

Note: like most impyla users, cursor() is called without `user=`, so OpenSession carries the OS user name while the
SASL PLAIN handshake carries --user. Real Impala takes the authenticated (SASL) user; so must whatever we test.
"""

import argparse
import sys
import traceback

RANGE_ROWS = 100000


class CheckFailed(Exception):
    """A check saw something other than what it expected."""


def expect(condition, message):
    if not condition:
        raise CheckFailed(message)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="impyla DB-API smoke test against an HS2 endpoint (mock impalad/proxy)")
    p.add_argument("--host", required=True)
    p.add_argument("--port", required=True, type=int)
    p.add_argument("--auth", required=True, type=str.upper, choices=["NOSASL", "PLAIN"],
                   help="NOSASL: unframed binary Thrift; PLAIN: SASL PLAIN via thrift_sasl")
    p.add_argument("--user", help="SASL PLAIN user (impyla's default: the OS user)")
    p.add_argument("--password", help="SASL PLAIN password (impyla's default: 'password')")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="socket timeout in seconds for every RPC, so a hang fails instead of blocking (default 60)")
    args = p.parse_args(argv)
    if args.auth == "NOSASL" and (args.user is not None or args.password is not None):
        p.error("--user/--password only apply to --auth PLAIN")
    return args


def open_connection(args):
    from impala.dbapi import connect
    kwargs = dict(host=args.host, port=args.port, auth_mechanism=args.auth, timeout=args.timeout)
    if args.auth == "PLAIN":
        kwargs.update(user=args.user, password=args.password)
    return connect(**kwargs)


def column_types(cursor):
    """[(name, type name)] of the last result set, from impyla's PEP 249 description."""
    return [(d[0], d[1]) for d in (cursor.description or [])]


def run_checks(args):
    """Yields (name, function) in order; the functions share the connections/cursors in `state`."""
    from impala.error import Error as ImpylaError  # base class of every error impyla raises

    state = {}

    def connect_and_cursor():
        state["conn"] = open_connection(args)
        state["cur"] = state["conn"].cursor()  # OpenSession happens here, not in connect()
        return "connect() + cursor() (%s)" % args.auth

    def select_one():
        cur = state["cur"]
        cur.execute("select 1")
        rows = cur.fetchall()
        expect(rows == [(1,)], "select 1 returned %r, expected [(1,)]" % (rows[:5],))
        types = column_types(cur)
        expect(len(types) == 1 and types[0][1] == "BIGINT", "select 1 described as %r, expected one BIGINT" % types)
        return "select 1 -> [(1,)]"

    def select_range():
        cur = state["cur"]
        cur.execute("select id from range(%d)" % RANGE_ROWS)
        types = column_types(cur)
        expect(types == [("id", "BIGINT")], "range() described as %r, expected [('id', 'BIGINT')]" % types)
        rows = cur.fetchall()
        expect(len(rows) == RANGE_ROWS, "fetchall returned %d rows, expected %d" % (len(rows), RANGE_ROWS))
        for i, row in enumerate(rows):
            expect(row == (i,), "row %d is %r, expected (%d,)" % (i, row, i))
        return "select id from range(%d) -> %d rows, ids 0..%d in order" % (RANGE_ROWS, RANGE_ROWS, RANGE_ROWS - 1)

    def no_result_set_statements():
        cur = state["cur"]
        for stmt in ("set mem_limit=1g", "create table t (x int)"):
            cur.execute(stmt)
            expect(cur.description is None, "%r returned a result set %r, expected none" % (stmt, cur.description))
        return "set mem_limit=1g and create table t (x int) succeed without a result set"

    def two_cursors_one_connection():
        cur1, cur2 = state["cur"], state["conn"].cursor()
        state["cur2"] = cur2
        # Interleave: both operations are open at the same time (two sessions on one connection).
        cur1.execute("select 11")
        cur2.execute("select 22")
        r2, r1 = cur2.fetchall(), cur1.fetchall()
        expect(r1 == [(11,)], "first cursor got %r, expected [(11,)]" % (r1,))
        expect(r2 == [(22,)], "second cursor got %r, expected [(22,)]" % (r2,))
        return "two cursors on one connection both work"

    def second_connection():
        state["conn2"] = open_connection(args)
        cur3 = state["conn2"].cursor()
        state["cur3"] = cur3
        cur3.execute("select 33")
        rows = cur3.fetchall()
        expect(rows == [(33,)], "second connection got %r, expected [(33,)]" % (rows,))
        return "a second connection works"

    def rejected_statement():
        cur = state["cur"]
        try:
            cur.execute("select * from no_such_thing")
            rows = cur.fetchall()
        except ImpylaError as e:
            error_type, text = type(e).__name__, str(e)
            expect("AnalysisException" in text,
                   "error %s does not carry the server's message (no 'AnalysisException'): %r" % (error_type, text))
        else:
            raise CheckFailed("select * from no_such_thing raised nothing (fetched %r)" % (rows[:5],))
        cur.execute("select 2")
        rows = cur.fetchall()
        expect(rows == [(2,)], "cursor after the error got %r, expected [(2,)]" % (rows,))
        return "rejected statement raises %s with the server's AnalysisException; cursor still works" % error_type

    def close_everything():
        for name in ("cur", "cur2", "cur3"):
            state.pop(name).close()  # CloseImpalaOperation if an operation is open, then CloseSession
        for name in ("conn", "conn2"):
            state.pop(name).close()  # closes the transport only
        return "closing 3 cursors and 2 connections raises nothing"

    checks = [connect_and_cursor, select_one, select_range, no_result_set_statements,
              two_cursors_one_connection, second_connection, rejected_statement, close_everything]
    return checks, state


def main(argv=None):
    args = parse_args(argv)
    try:
        import impala.dbapi  # noqa: F401  (fail early and clearly if impyla is missing)
    except ImportError as e:
        print("impyla_smoke: FAIL: cannot import impyla (%s); run scripts/setup-python.sh and use .venv/bin/python"
              % e, file=sys.stderr)
        return 1

    checks, state = run_checks(args)
    passed = 0
    for check in checks:
        try:
            summary = check()
        except CheckFailed as e:
            print("FAIL %s: %s" % (check.__name__, e), file=sys.stderr)
            break
        except Exception as e:  # connection refused, protocol errors, ...: also a failure, with details
            traceback.print_exc()
            print("FAIL %s: unexpected %s: %s" % (check.__name__, type(e).__name__, e), file=sys.stderr)
            break
        passed += 1
        print("ok %d %s" % (passed, summary), flush=True)

    failed = 0 if passed == len(checks) else 1
    if failed:
        for obj in state.values():  # best-effort clean-up after a failure
            try:
                obj.close()
            except Exception:
                pass
    print("impyla_smoke: %d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(main())

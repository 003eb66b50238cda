"""A few HS2 calls with impyla, for fuzz seeds: a query and its rows, metadata calls, a failing statement.

Usage: python impyla_calls.py HOST PORT NOSASL|PLAIN [http]"""

import sys

from impala.dbapi import connect


def main():
    host, port, auth = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    kwargs = dict(host=host, port=port, auth_mechanism=auth, timeout=60)
    if auth == "PLAIN":
        kwargs.update(user="alice", password="secret")
    if len(sys.argv) > 4 and sys.argv[4] == "http":
        kwargs.update(use_http_transport=True, http_path="cliservice")
    conn = connect(**kwargs)
    cur = conn.cursor()
    cur.execute("select 1 as one, 'two' as two, cast(3.5 as double) as three")
    print(cur.fetchall())
    cur.execute("select id from range(5)")
    print(cur.fetchall())
    print(cur.get_databases())
    cur.get_tables()
    print(cur.fetchall()[:3])
    try:
        cur.execute("select * from no_such_table_for_fuzz_seeds")
    except Exception as e:  # the ERROR reply is what we want on the wire
        print("expected error:", str(e).splitlines()[0][:80])
    cur.close()
    conn.close()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""impyla over TLS and/or HTTP: runs impyla_smoke's checks with use_ssl / use_http_transport added to every
connect(), or checks that a wrong password is refused.

Usage:
    python impyla_tls_http.py [--ssl --ca-cert F] [--http [--http-path P]] [--expect-refused] IMPYLA_SMOKE_ARGS...

IMPYLA_SMOKE_ARGS are impyla_smoke.py's own (--host, --port, --auth, --user, --password). Prints impyla_smoke's
closing "N passed, M failed" line; with --expect-refused, "impyla_tls_http: 1 passed, 0 failed" when opening a
session fails with an authentication error (HTTP 401 or the SASL refusal).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import impyla_smoke  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ssl", action="store_true", help="use_ssl=True")
    p.add_argument("--ca-cert", help="CA file that verifies the server's certificate")
    p.add_argument("--http", action="store_true", help="use_http_transport=True")
    p.add_argument("--http-path", default="cliservice")
    p.add_argument("--expect-refused", action="store_true", help="expect the credentials to be refused")
    ours, rest = p.parse_known_args()
    extra = {}
    if ours.ssl:
        extra.update(use_ssl=True, ca_cert=ours.ca_cert)
    if ours.http:
        extra.update(use_http_transport=True, http_path=ours.http_path)

    import impala.dbapi
    real_connect = impala.dbapi.connect

    def connect(**kwargs):
        kwargs.update(extra)
        if ours.http:
            kwargs.pop("timeout", None)  # impyla's HTTP transport has none (it only logs an error)
        return real_connect(**kwargs)

    impala.dbapi.connect = connect  # impyla_smoke imports it at call time
    if not ours.expect_refused:
        return impyla_smoke.main(rest)

    args = impyla_smoke.parse_args(rest)
    try:
        impyla_smoke.open_connection(args).cursor()
    except Exception as e:  # impyla raises HttpError (401) or its own auth errors
        text = "%s: %s" % (type(e).__name__, e)
        if "401" in text or "Invalid username or password" in text or "refused" in text:
            print("ok 1 refused: %s" % text.splitlines()[0])
            print("impyla_tls_http: 1 passed, 0 failed")
            return 0
        print("FAIL refused for another reason: %s" % text, file=sys.stderr)
    else:
        print("FAIL a session opened with a wrong password", file=sys.stderr)
    print("impyla_tls_http: 0 passed, 1 failed")
    return 1


if __name__ == "__main__":
    sys.exit(main())

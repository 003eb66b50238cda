# impyla through hs2-proxy with Kerberos, driven by tests/kerberos/proxy_clients.rs. One mode per run:
#
#   impyla.py open  PORT            open a session (SASL GSSAPI, service impala, host localhost), query
#                                   current_user(), then reuse the session from a NEW connection as Hue does;
#                                   print both users and the handle (guid secret, hex); leave the session open
#   impyla.py use   PORT GUID SECRET  a new connection runs current_user() in that session; "ERR <text>" if refused
#   impyla.py close PORT GUID SECRET  a new connection closes that session
#   impyla.py doas  PORT USER       open a session delegating to USER (impala.doas.user), print current_user()
#   impyla.py service PORT NAME [KRB_HOST]   connect asking for NAME/<KRB_HOST or localhost>; print the error
#   impyla.py http  PORT SERVICE    HS2 over HTTP with Negotiate: one query, then the ccache is deleted and more
#                                   queries run on the proxy's cookie alone
#
# Every failure is printed as one line "ERR <ExceptionType>: <text>" and exits 0, so the Rust side asserts on
# the text. Secrets are never printed (the handle's secret is a test value of a throw-away session).
import os
import sys

from impala.dbapi import connect
from impala.hiveserver2 import HS2Session, HiveServer2Cursor
from impala._thrift_gen.TCLIService.ttypes import THandleIdentifier, TSessionHandle


def gssapi(port, service='impala', krb_host=None, **kw):
    return connect(host='localhost', port=port, auth_mechanism='GSSAPI', kerberos_service_name=service,
                   krb_host=krb_host, timeout=20, **kw)


def current_user(cur):
    cur.execute('select current_user()')
    return cur.fetchall()[0][0]


def reuse(conn, guid, secret):
    """A cursor on `conn` over an existing session, as Hue builds one from the handle in its database."""
    handle = TSessionHandle(sessionId=THandleIdentifier(guid=bytes.fromhex(guid), secret=bytes.fromhex(secret)))
    session = HS2Session(conn.service, handle, {}, 5)
    cur = HiveServer2Cursor(session)
    cur._closed = True  # never close the session from __del__: the test decides its end
    return cur


def main():
    mode, port = sys.argv[1], int(sys.argv[2])
    try:
        if mode == 'open':
            first = gssapi(port)
            cur = first.cursor()
            print(current_user(cur))
            h = cur.session.handle.sessionId
            again = gssapi(port)
            print(current_user(reuse(again, h.guid.hex(), h.secret.hex())))
            print(h.guid.hex(), h.secret.hex())
            sys.stdout.flush()
            os._exit(0)  # no CloseSession: the session outlives this client's connections
        elif mode == 'use':
            print(current_user(reuse(gssapi(port), sys.argv[3], sys.argv[4])))
        elif mode == 'close':
            reuse(gssapi(port), sys.argv[3], sys.argv[4]).session.close()
            print('closed')
        elif mode == 'doas':
            cur = gssapi(port).cursor(configuration={'impala.doas.user': sys.argv[3]})
            print(current_user(cur))
            cur.close()
        elif mode == 'service':
            krb_host = sys.argv[4] if len(sys.argv) > 4 else None
            cur = gssapi(port, service=sys.argv[3], krb_host=krb_host).cursor()
            print(current_user(cur))
        elif mode == 'http':
            conn = gssapi(port, service=sys.argv[3], use_http_transport=True, http_path='cliservice')
            cur = conn.cursor()
            print(current_user(cur))
            # From here on impyla sends only the proxy's impala.auth cookie: without a ccache, any new
            # Negotiate token would fail.
            ccache = os.environ['KRB5CCNAME']
            os.remove(ccache[len('FILE:'):] if ccache.startswith('FILE:') else ccache)
            for _ in range(3):
                print(current_user(cur))
            cur2 = conn.cursor()
            print(current_user(cur2))
            cur2.close()
            cur.close()
        else:
            raise SystemExit('unknown mode ' + mode)
    except Exception as e:  # the Rust side asserts on the text
        print('ERR %s: %s' % (type(e).__name__, e))


main()

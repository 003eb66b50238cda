# impyla with auth_mechanism='LDAP' (SASL PLAIN), driven by tests/ldap.rs:
#   IMPYLA_PASSWORD=... impyla_ldap.py PORT USER [DELEGATE_TO]
# runs `select current_user()` in a new session (with hive.server2.proxy.user=DELEGATE_TO if given) and prints
# the user, or one line "ERR <ExceptionType>: <text>". The password comes from the environment, never argv.
import os
import sys

from impala.dbapi import connect

port, user = int(sys.argv[1]), sys.argv[2]
conf = {'hive.server2.proxy.user': sys.argv[3]} if len(sys.argv) > 3 else None
try:
    conn = connect(host='127.0.0.1', port=port, auth_mechanism='LDAP', user=user,
                   password=os.environ['IMPYLA_PASSWORD'], timeout=30)
    cur = conn.cursor(configuration=conf)
    cur.execute('select current_user()')
    print(cur.fetchall()[0][0])
    cur.close()
    conn.close()
except Exception as e:
    print('ERR %s: %s' % (type(e).__name__, e))

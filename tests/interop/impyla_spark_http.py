#!/usr/bin/env python3
"""impyla_spark.py's checks with impyla's HTTP transport (use_http_transport=True, http_path=cliservice).

Usage: python impyla_spark_http.py IMPYLA_SPARK_ARGS...   (see impyla_spark.py; --auth PLAIN: Spark's HTTP
mode needs a Basic header). Prints impyla_spark's closing "N passed, M failed" line.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import impyla_spark  # noqa: E402

binary_kwargs = impyla_spark.connect_kwargs


def http_kwargs(args):
    kwargs = binary_kwargs(args)
    kwargs.update(use_http_transport=True, http_path="cliservice")
    kwargs.pop("timeout", None)  # impyla's HTTP transport has no timeout (it only logs an error)
    return kwargs


impyla_spark.connect_kwargs = http_kwargs  # both the DB-API and the raw Thrift checks connect through it

if __name__ == "__main__":
    sys.exit(impyla_spark.main())

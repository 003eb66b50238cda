#!/usr/bin/env python3
"""Checks the PromQL of the Grafana dashboard and of the alerting rules against the real exporter and a real
Prometheus (run by tests/monitoring/test-prometheus.sh; standard library only).

  check_queries.py --metrics FILE --dashboard FILE --rules-json FILE [--prometheus URL]

--metrics: a running proxy's /metrics text. The exported names are read from it: every sample's name, and from
  each `# TYPE name type` line the names that type implies (counter: name_total; histogram: name_bucket,
  name_sum, name_count), so nothing depends on a hand-kept list.
--dashboard: the dashboard JSON; every panel target's `expr` and every query variable's `label_values(...)`.
--rules-json: Prometheus's /api/v1/rules answer, i.e. the rules as the real Prometheus loaded them.
--prometheus: also run every dashboard expression (Grafana variables substituted) as an instant query there:
  each must parse and evaluate.
Every expression must name at least one metric, and only exported ones. Exits 1 with the offenders.
"""
import argparse
import json
import re
import sys
import urllib.parse
import urllib.request

# Words that may stand where a metric name could: binary operators and modifiers, and number literals.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
            "group_right", "inf", "nan", "Inf", "NaN", "atan2"}
TYPE_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                 "summary": ["", "_sum", "_count"], "gauge": [""], "unknown": [""], "info": ["_info"],
                 "stateset": [""], "gaugehistogram": ["_bucket", "_gsum", "_gcount"]}
# Grafana's variables, as the test's Prometheus should see them.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m", "$job": "hs2-proxy",
                "$instance": ".*", "$backend": ".*"}


def exported_names(text):
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.update(name + s for s in TYPE_SUFFIXES.get(kind.strip(), [""]))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def metric_names(expr):
    """The metric names a PromQL expression selects: what is left once strings, label matchers, ranges,
    grouping clauses, Grafana variables, functions and keywords are taken out."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        before = e[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":  # an exponent or a duration unit: 1e3, 5m
            continue
        if e[m.end():].lstrip().startswith("(") or m.group(0) in KEYWORDS:
            continue
        names.add(m.group(0))
    return names


def self_test():
    got = metric_names('sum by (backend) (rate(a_total{x="y{z}"}[5m])) / on(i) b > 0.5 and c offset 5m or 1e3')
    assert got == {"a_total", "b", "c"}, got
    got = metric_names('histogram_quantile(0.99, sum by (le) (rate(h_bucket{job="$job"}[$__rate_interval])))')
    assert got == {"h_bucket"}, got
    assert exported_names("# TYPE r counter\n# TYPE d histogram\ng{a=\"1\"} 2\n") == {
        "r_total", "d_bucket", "d_sum", "d_count", "g"}


def dashboard_exprs(dash):
    out = []
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash.get("panels", [])):
        if p.get("type") != "row" and not p.get("targets"):
            out.append((f"panel {p.get('title')!r}", None))
        for t in p.get("targets", []):
            out.append((f"panel {p.get('title')!r} {t.get('refId')}", t.get("expr")))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v.get("query"), dict) else v.get("query", "")
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\)\s*", q)
        out.append((f"variable {v['name']}", m.group(1) if m else q))
    return out


def rules_exprs(rules):
    return [(f"rule {r['name']}", r["query"]) for g in rules["data"]["groups"] for r in g["rules"]]


def instant_query(url, expr):
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    q = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
            body = json.load(r)
    except urllib.error.HTTPError as e:
        body = json.load(e)
    if body.get("status") != "success":
        return None, body.get("error", body)
    return len(body["data"]["result"]), None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--dashboard", required=True)
    ap.add_argument("--rules-json", required=True)
    ap.add_argument("--prometheus")
    a = ap.parse_args()
    self_test()
    with open(a.metrics) as f:
        exported = exported_names(f.read())
    with open(a.dashboard) as f:
        dash = json.load(f)
    with open(a.rules_json) as f:
        rules = json.load(f)
    checked = dashboard_exprs(dash) + rules_exprs(rules)
    bad = []
    used = set()
    for where, expr in checked:
        if not expr:
            bad.append(f"{where}: no query")
            continue
        names = metric_names(expr)
        used |= names
        if not names:
            bad.append(f"{where}: names no metric: {expr}")
        for n in sorted(names - exported):
            bad.append(f"{where}: {n} is not exported by the proxy")
    answered = 0
    if a.prometheus:
        for where, expr in dashboard_exprs(dash):
            if not expr:
                continue
            n, err = instant_query(a.prometheus, expr)
            if err is not None:
                bad.append(f"{where}: Prometheus rejects it: {err}")
            elif n:
                answered += 1
    for b in bad:
        print("FAIL:", b, file=sys.stderr)
    print(f"check_queries: {len(checked)} expressions ({len(rules_exprs(rules))} rules), {len(used)} metric names, "
          f"all among {len(exported)} exported; {answered} dashboard queries returned data" if not bad else
          f"check_queries: {len(bad)} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Check slakeeper's Grafana dashboards as data and extract every PromQL expression.

No Grafana server can be installed on our machines, so the boards are checked as files:

  * each dashboard is the bare model (no `{"dashboard": ...}` wrapper, no `__inputs`, no
    `${DS_...}` export placeholders, `id` null or absent), with a uid of at most 40
    characters, a title, the expected schemaVersion, unique panel ids, a complete gridPos that
    fits the 24-column grid without overlaps, and every datasource reference equal to the
    provisioned Prometheus datasource's uid;
  * the templating variables `workflow` and `priority` exist (multi-value, with "All");
  * Grafana variables are only used where they can be substituted for a real query:
    dashboard variables inside regex matchers (`=~`, `!~`), time macros anywhere;
  * rate()/irate() windows in dashboards are `$__rate_interval`.

Then every expression (panel targets, annotation queries, templating `label_values(...)`
queries, and the alerting/recording rules' `expr`) is printed as one JSON object a line,
`{"source": ..., "panel": ..., "expr": ...}`, with Grafana variables substituted so that the
real Prometheus can parse and evaluate it: `$__rate_interval` -> 5m, `$__range` -> 1h,
`$__interval` -> 1m, dashboard variables in regex matchers -> `.*`. A `label_values(SEL, l)`
query becomes `SEL` (the series the variable reads its values from).

Modes:
  check_dashboards.py                         validate, then print the JSON lines
  check_dashboards.py --check-series FILE     validate, then check that every slakeeper_*
                                              metric an expression reads is listed in FILE
  check_dashboards.py --promtool PATH         validate, then have promtool parse every
                                              expression (offline, as recording rules)
  check_dashboards.py --table                 validate, then print a Markdown table of the
                                              queries and the series each reads

FILE for --check-series: one metric name a line, optionally followed by its type
(`slakeeper_sla_time_seconds histogram`); `#` comments are ignored, except that a Prometheus
exposition (`GET /metrics` output, with `# TYPE name type` lines) is read too. A name ending
in _bucket/_sum/_count is accepted when its base name is listed (and, when the type is known,
is a histogram or summary).

Exit status: 0 when everything is fine, 1 on any finding (each printed to stderr with its
file and panel), 2 on bad usage. Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCHEMA_VERSION = 39
MAX_UID_LEN = 40
REQUIRED_VARIABLES = ("workflow", "priority")

# What each Grafana macro becomes for a real Prometheus.
TIME_MACROS = {
    "__rate_interval_ms": "300000",
    "__rate_interval": "5m",
    "__range_ms": "3600000",
    "__range_s": "3600",
    "__range": "1h",
    "__interval_ms": "60000",
    "__interval": "1m",
}
# Built-ins that cannot stand for anything sensible in a query we want to evaluate.
OTHER_BUILTINS = ("__from", "__to", "__dashboard", "__org", "__user", "__name", "__timeFilter")

# Panel types that never query a datasource.
NO_QUERY_PANELS = {"row", "text", "news", "dashlist", "alertlist", "annolist", "welcome"}

METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])slakeeper_[a-z_]+")
HIST_SUFFIX_RE = re.compile(r"_(bucket|sum|count)$")
# $name, ${name}, ${name:format}, [[name]]
VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]")
MATCHER_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


class Findings:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, msg: str) -> None:
        self.items.append(f"{where}: {msg}")


def rel(path: str) -> str:
    try:
        r = os.path.relpath(path, REPO)
    except ValueError:
        return path
    return path if r.startswith("..") else r


# ------------------------------------------------------------------ datasource
def provisioned_uid(path: str, findings: Findings) -> str | None:
    """The uid of the (single) Prometheus datasource in a provisioning YAML file.

    A line scanner rather than a YAML parser, to stay in the standard library: provisioning
    files are flat enough for it.
    """
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        findings.add(rel(path), f"cannot read datasource provisioning: {e}")
        return None
    if not re.search(r"^apiVersion:\s*1\s*$", text, re.M):
        findings.add(rel(path), "datasource provisioning lacks `apiVersion: 1`")
    if not re.search(r"^\s*(-\s+)?type:\s*[\"']?prometheus[\"']?\s*$", text, re.M):
        findings.add(rel(path), "no datasource of type prometheus")
    uids = re.findall(r"^\s*(?:-\s+)?uid:\s*[\"']?([^\"'\s#]+)", text, re.M)
    if len(uids) != 1:
        findings.add(rel(path), f"expected exactly one datasource uid, found {uids}")
        return uids[0] if uids else None
    return uids[0]


# ------------------------------------------------------------------ expressions
def substitute(expr: str, variables: set[str], where: str, findings: Findings) -> str:
    """Grafana variables -> values a real Prometheus accepts (see module doc)."""

    def var_name(m: re.Match) -> str:
        return m.group(1) or m.group(2) or m.group(3)

    def in_matcher(m: re.Match) -> str:
        label, op, value = m.group(1), m.group(2), m.group(3)
        refs = [var_name(v) for v in VAR_RE.finditer(value)]
        user = [r for r in refs if not r.startswith("__")]
        if not user:
            return m.group(0)
        if op not in ("=~", "!~"):
            findings.add(where, f'variable ${user[0]} in a `{label}{op}"…"` matcher: multi-value '
                                f'and "All" need a regex matcher (=~)')
            return m.group(0)
        for r in user:
            if r not in variables:
                findings.add(where, f"${r} is not a templating variable of this dashboard")

        def repl(v: re.Match) -> str:
            return v.group(0) if var_name(v).startswith("__") else ".*"

        return f'{label}{op}"{VAR_RE.sub(repl, value)}"'

    out = MATCHER_RE.sub(in_matcher, expr)

    def macro(m: re.Match) -> str:
        name = var_name(m)
        if name in TIME_MACROS:
            return TIME_MACROS[name]
        if name.startswith("__") or name in OTHER_BUILTINS:
            findings.add(where, f"${name} has no stand-in value for a real Prometheus")
        elif name in variables:
            findings.add(where, f"${name} used outside a regex label matcher")
        else:
            findings.add(where, f"unknown variable ${name}")
        return m.group(0)

    return VAR_RE.sub(macro, out)


def split_call(text: str, fname: str) -> list[str] | None:
    """`fname(a, b)` -> ["a", "b"] (top-level commas only), or None if text is not that call."""
    text = text.strip()
    if not text.startswith(fname + "(") or not text.endswith(")"):
        return None
    inner = text[len(fname) + 1:-1]
    args, depth, cur, quote = [], 0, [], None
    i = 0
    while i < len(inner):
        c = inner[i]
        if quote:
            cur.append(c)
            if c == "\\" and i + 1 < len(inner):
                cur.append(inner[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
            cur.append(c)
        elif c in "([{":
            depth += 1
            cur.append(c)
        elif c in ")]}":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    args.append("".join(cur).strip())
    return args


def variable_query_expr(query: str, where: str, findings: Findings) -> str | None:
    """A Prometheus templating query -> the PromQL it evaluates, or None if it has none."""
    q = query.strip()
    args = split_call(q, "label_values")
    if args is not None:
        if len(args) == 2 and args[0]:
            return args[0]  # the series the values are read from
        if len(args) == 1:
            print(f"note: {where}: label_values({args[0]}) reads all series; not extracted",
                  file=sys.stderr)
            return None
        findings.add(where, f"cannot read label_values query {q!r}")
        return None
    args = split_call(q, "query_result")
    if args is not None and len(args) == 1:
        return args[0]
    if q.startswith(("label_names(", "metrics(")):
        print(f"note: {where}: {q.split('(')[0]}() has no PromQL; not extracted", file=sys.stderr)
        return None
    return q  # treated as plain PromQL


def rate_windows(expr: str) -> list[str]:
    """The range-selector windows of every rate()/irate() call in expr."""
    out = []
    for m in re.finditer(r"\b(i?rate)\s*\(", expr):
        depth, i = 1, m.end()
        while i < len(expr) and depth:
            if expr[i] == "(":
                depth += 1
            elif expr[i] == ")":
                depth -= 1
            i += 1
        body = expr[m.end():i - 1]
        w = re.search(r"\[([^\]]*)\]\s*$", body.strip())
        out.append(w.group(1).strip() if w else "")
    return out


# ------------------------------------------------------------------ dashboards
def walk(node, path=""):
    """Yield (json_path, dict) for every dict in a JSON tree."""
    if isinstance(node, dict):
        yield path, node
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def flat_panels(panels):
    for p in panels or []:
        if not isinstance(p, dict):
            continue
        yield p, False
        for child in p.get("panels") or []:  # a collapsed row keeps its panels inside it
            if isinstance(child, dict):
                yield child, True


def check_dashboard(path: str, ds_uid: str | None, findings: Findings, seen_uids: dict,
                    seen_titles: dict, records: list) -> None:
    src = rel(path)
    try:
        raw = open(path, encoding="utf-8").read()
        d = json.loads(raw)
    except (OSError, ValueError) as e:
        findings.add(src, f"not readable JSON: {e}")
        return
    if not isinstance(d, dict):
        findings.add(src, "top level is not an object")
        return
    if "dashboard" in d and "panels" not in d:
        findings.add(src, 'HTTP API wrapper {"dashboard": …}: provision the bare dashboard model')
        d = d["dashboard"] if isinstance(d["dashboard"], dict) else {}
    for bad in ("__inputs", "__requires", "__elements"):
        if bad in d:
            findings.add(src, f"export placeholder section {bad} present")
    if "${DS_" in raw:
        findings.add(src, "export placeholder ${DS_…} present")
    if d.get("id") is not None:
        findings.add(src, f"id must be null or absent (is {d.get('id')!r}); Grafana assigns it")

    uid = d.get("uid")
    if not isinstance(uid, str) or not uid:
        findings.add(src, "missing uid")
    else:
        if len(uid) > MAX_UID_LEN:
            findings.add(src, f"uid {uid!r} is {len(uid)} chars (max {MAX_UID_LEN})")
        if not re.fullmatch(r"[A-Za-z0-9_-]+", uid):
            findings.add(src, f"uid {uid!r} has characters other than letters, digits, - and _")
        if uid in seen_uids:
            findings.add(src, f"uid {uid!r} also used by {seen_uids[uid]}")
        seen_uids[uid] = src
    title = d.get("title")
    if not isinstance(title, str) or not title.strip():
        findings.add(src, "missing title")
    else:
        if title in seen_titles:
            findings.add(src, f"title {title!r} also used by {seen_titles[title]}")
        seen_titles[title] = src
    if d.get("schemaVersion") != SCHEMA_VERSION:
        findings.add(src, f"schemaVersion is {d.get('schemaVersion')!r}, expected {SCHEMA_VERSION}")

    # Every datasource reference anywhere in the model.
    for jpath, node in walk(d):
        if "datasource" not in node:
            continue
        ds = node["datasource"]
        builtin_grafana = (node.get("builtIn") in (1, True) and isinstance(ds, dict)
                           and ds.get("type") == "grafana")
        if builtin_grafana:
            continue
        if not isinstance(ds, dict):
            findings.add(src, f"{jpath}.datasource is {ds!r}: use "
                              f'{{"type": "prometheus", "uid": "{ds_uid}"}}')
        elif ds.get("uid") != ds_uid or ds.get("type") != "prometheus":
            findings.add(src, f"{jpath}.datasource is {json.dumps(ds)}, expected "
                              f'{{"type": "prometheus", "uid": "{ds_uid}"}}')

    # Templating.
    variables: dict[str, dict] = {}
    templ = (d.get("templating") or {}).get("list") or []
    for v in templ:
        if isinstance(v, dict) and v.get("name"):
            if v["name"] in variables:
                findings.add(src, f"templating variable {v['name']!r} defined twice")
            variables[v["name"]] = v
    for name in REQUIRED_VARIABLES:
        v = variables.get(name)
        if v is None:
            findings.add(src, f"templating variable {name!r} missing")
            continue
        if not v.get("multi") or not v.get("includeAll"):
            findings.add(src, f"templating variable {name!r} must be multi-value with include All")
        if v.get("includeAll") and v.get("allValue") not in (None, ".*", ".+"):
            findings.add(src, f"templating variable {name!r}: allValue {v.get('allValue')!r} "
                              'is not a regex for all values (".*")')
    names = set(variables)

    for name, v in variables.items():
        if v.get("type") != "query":
            continue
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query")
        if not isinstance(q, str) or not q.strip():
            findings.add(src, f"templating variable {name!r} has no query")
            continue
        where = f"{src}: templating:{name}"
        expr = variable_query_expr(q, where, findings)
        if expr is not None:
            records.append((src, f"templating:{name}", substitute(expr, names, where, findings)))

    # Annotations with queries.
    for a in (d.get("annotations") or {}).get("list") or []:
        if isinstance(a, dict) and a.get("expr"):
            label = f"annotation:{a.get('name', '?')}"
            where = f"{src}: {label}"
            records.append((src, label, substitute(a["expr"], names, where, findings)))

    # Panels.
    ids: dict = {}
    boxes = []
    for p, nested in flat_panels(d.get("panels")):
        pid, ptype = p.get("id"), p.get("type")
        label = f"{pid} {p.get('title', '')}".strip()
        where = f"{src}: panel {label!r}"
        if not isinstance(pid, int) or isinstance(pid, bool):
            findings.add(where, "panel id missing or not an integer")
        elif pid in ids:
            findings.add(where, f"panel id {pid} also used by panel {ids[pid]!r}")
        else:
            ids[pid] = p.get("title", "")
        if not p.get("title") and ptype != "row":
            findings.add(where, "panel without a title")
        gp = p.get("gridPos")
        if not isinstance(gp, dict) or not all(
                isinstance(gp.get(k), int) and not isinstance(gp.get(k), bool) for k in "hwxy"):
            findings.add(where, f"gridPos missing or incomplete: {gp!r}")
        else:
            if gp["w"] < 1 or gp["h"] < 1 or gp["x"] < 0 or gp["y"] < 0 or gp["x"] + gp["w"] > 24:
                findings.add(where, f"gridPos {gp} outside the 24-column grid")
            if not nested:
                boxes.append((label, gp))
        if ptype in NO_QUERY_PANELS:
            continue
        if "datasource" not in p:
            findings.add(where, "panel has no datasource")
        targets = p.get("targets") or []
        if not targets:
            findings.add(where, "panel has no targets")
        for t in targets:
            if not isinstance(t, dict):
                continue
            ref = t.get("refId", "?")
            expr = t.get("expr")
            twhere = f"{where} [{ref}]"
            if not isinstance(expr, str) or not expr.strip():
                if not t.get("hide"):
                    findings.add(twhere, "target without expr")
                continue
            for w in rate_windows(expr):
                if w != "$__rate_interval":
                    findings.add(twhere, f"rate() window is [{w}]: use [$__rate_interval]")
            records.append((src, f"{label} [{ref}]", substitute(expr, names, twhere, findings)))

    # Overlaps between top-level panels.
    for i, (la, a) in enumerate(boxes):
        for lb, b in boxes[i + 1:]:
            if (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
                    and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"]):
                findings.add(src, f"panels {la!r} and {lb!r} overlap")


# ------------------------------------------------------------------ rule files
def yaml_scalar(value: str, following: list[str], key_indent: int) -> tuple[str, int]:
    """Read a YAML scalar starting after `key:` (plain, quoted or block). Returns (text,
    lines consumed from `following`). Enough YAML for Prometheus rule files."""
    v = value.strip()
    if v[:1] in ("|", ">"):
        style = v[0]
        block, used, indent = [], 0, None
        for line in following:
            if line.strip() == "":
                block.append("")
                used += 1
                continue
            ind = len(line) - len(line.lstrip(" "))
            if ind <= key_indent:
                break
            indent = ind if indent is None else indent
            block.append(line[indent:] if len(line) >= indent else line.strip())
            used += 1
        while block and block[-1] == "":
            block.pop()
            used -= 1
        if style == "|":
            return "\n".join(block), used
        return " ".join(b for b in block if b), used
    if v.startswith('"'):
        try:
            return json.loads(v.split(" #")[0].strip()), 0
        except ValueError:
            return v.strip('"'), 0
    if v.startswith("'"):
        return v[1:v.rindex("'")].replace("''", "'"), 0
    # plain scalar, possibly continued on more-indented lines
    parts, used = [v.split(" #")[0]], 0
    for line in following:
        ind = len(line) - len(line.lstrip(" "))
        if line.strip() == "" or ind <= key_indent or re.match(r"\s*(-\s+)?\w+:", line):
            break
        parts.append(line.strip())
        used += 1
    return " ".join(parts), used


def rule_records(path: str, findings: Findings, records: list) -> None:
    src = rel(path)
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        findings.add(src, f"cannot read: {e}")
        return
    name = "?"
    count = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^(\s*)(?:-\s+)?(alert|record):\s*(.+?)\s*$", line)
        if m:
            name = f"{m.group(2)}:{m.group(3).strip(chr(34) + chr(39))}"
        m = re.match(r"^(\s*)(-\s+)?expr:\s*(.*)$", line)
        if m:
            key_indent = len(m.group(1)) + (len(m.group(2)) if m.group(2) else 0)
            expr, used = yaml_scalar(m.group(3), lines[i + 1:], key_indent)
            records.append((src, name, expr.strip()))
            count += 1
            i += used
        i += 1
    if count == 0:
        findings.add(src, "no expr found")


# ------------------------------------------------------------------ series check
def load_series(path: str) -> tuple[set[str], dict[str, str]]:
    names, types = set(), {}
    for line in open(path, encoding="utf-8"):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            m = re.match(r"#\s*TYPE\s+([A-Za-z_:][A-Za-z0-9_:]*)\s+(\w+)", s)
            if m:
                names.add(m.group(1))
                types[m.group(1)] = m.group(2)
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(?:\s+(counter|gauge|histogram|summary|untyped)\b)?", s)
        if m:
            names.add(m.group(1))
            if m.group(2):
                types[m.group(1)] = m.group(2)
    return names, types


def metric_known(token: str, names: set[str], types: dict[str, str]) -> bool:
    if token in names:
        return True
    base = HIST_SUFFIX_RE.sub("", token)
    if base != token and base in names:
        return types.get(base, "histogram") in ("histogram", "summary") or (
            token.endswith(("_sum", "_count")) and types.get(base) == "summary")
    return False


def metrics_of(expr: str) -> list[str]:
    seen = []
    for t in METRIC_RE.findall(expr):
        if t not in seen:
            seen.append(t)
    return seen


# ------------------------------------------------------------------ promtool parse
def promtool_parse(promtool: str, records: list, findings: Findings) -> None:
    def run(items) -> tuple[bool, str]:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("groups:\n  - name: check_dashboards\n    rules:\n")
            for n, (_, _, expr) in items:
                f.write(f"      - record: check_dashboards:expr_{n}\n")
                f.write(f"        expr: {json.dumps(expr)}\n")
            tmp = f.name
        try:
            r = subprocess.run([promtool, "check", "rules", tmp], capture_output=True, text=True)
        finally:
            os.unlink(tmp)
        return r.returncode == 0, (r.stdout + r.stderr).strip()

    items = list(enumerate(records))
    ok, out = run(items)
    if ok:
        return
    for n, rec in items:  # find the offenders one by one
        ok1, out1 = run([(n, rec)])
        if not ok1:
            msg = out1.splitlines()[-1] if out1 else "promtool failed"
            findings.add(f"{rec[0]}: {rec[1]}", f"promtool cannot parse {rec[2]!r}: {msg}")


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--dashboards", default=os.path.join(REPO, "grafana", "dashboards"),
                    help="directory of dashboard JSON files (default: grafana/dashboards)")
    ap.add_argument("--datasource", default=os.path.join(
        REPO, "grafana", "provisioning", "datasources", "prometheus.yaml"),
        help="datasource provisioning file whose uid every panel must use")
    ap.add_argument("--rules", action="append", default=None,
                    help="Prometheus rule file(s) (default: grafana/alerts/*-rules.yaml)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--check-series", metavar="SERIES_FILE",
                      help="verify every slakeeper_* metric read is listed in SERIES_FILE")
    mode.add_argument("--promtool", metavar="PATH", help="parse every expression with promtool")
    mode.add_argument("--table", action="store_true",
                      help="print a Markdown table: source, panel, series read, expression")
    args = ap.parse_args(argv)

    findings = Findings()
    records: list[tuple[str, str, str]] = []

    ds_uid = provisioned_uid(args.datasource, findings)
    files = sorted(glob.glob(os.path.join(args.dashboards, "*.json")))
    if not files:
        findings.add(rel(args.dashboards), "no dashboard JSON files")
    seen_uids: dict = {}
    seen_titles: dict = {}
    for f in files:
        check_dashboard(f, ds_uid, findings, seen_uids, seen_titles, records)

    rules = args.rules
    if rules is None:
        rules = sorted(p for p in glob.glob(os.path.join(REPO, "grafana", "alerts", "*.yaml"))
                       if not p.endswith(".test.yaml"))
    for r in rules:
        rule_records(r, findings, records)

    if not findings.items:
        if args.check_series:
            try:
                names, types = load_series(args.check_series)
            except OSError as e:
                print(f"cannot read {args.check_series}: {e}", file=sys.stderr)
                return 2
            checked = 0
            for src, panel, expr in records:
                for t in metrics_of(expr):
                    checked += 1
                    if not metric_known(t, names, types):
                        findings.add(f"{src}: {panel}",
                                     f"reads {t}, which is not in {args.check_series}")
            if not findings.items:
                print(f"ok: {len(records)} expressions, {checked} metric references, "
                      f"all in {args.check_series}")
        elif args.promtool:
            promtool_parse(args.promtool, records, findings)
            if not findings.items:
                print(f"ok: promtool parsed all {len(records)} expressions")
        elif args.table:
            print("| source | panel | series read | expression |")
            print("|---|---|---|---|")
            for src, panel, expr in records:
                series = ", ".join(HIST_SUFFIX_RE.sub("", t) if t.endswith("_bucket") else t
                                   for t in metrics_of(expr))
                if re.search(r"(?<![A-Za-z0-9_])up\{", expr):
                    series = ", ".join(s for s in ("up", series) if s)
                e = " ".join(expr.split()).replace("|", "\\|")
                print(f"| {os.path.basename(src)} | {panel.replace('|', '/')} | {series} | `{e}` |")
        else:
            for src, panel, expr in records:
                print(json.dumps({"source": src, "panel": panel, "expr": expr}, ensure_ascii=False))

    for item in findings.items:
        print(item, file=sys.stderr)
    if findings.items:
        print(f"{len(findings.items)} problem(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

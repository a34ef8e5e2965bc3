"""Structure checks of deploy/observability/ that promtool does not do (run by rules_test.sh).

  static_checks.py SOURCE_DIR OUT_RULES_FILE

- grafana-dashboard.json: valid JSON; a `datasource` variable (Prometheus) and a `run_id` variable;
  unique panel ids; every panel but rows has a title, the ${datasource} data source and targets
  whose expressions are non-empty and filter on $run_id; every dashboard expression is written,
  with Grafana's variables replaced, as a recording rule to OUT_RULES_FILE so that promtool can
  parse it. Stat and gauge panels are instant queries that read every selector as
  last_over_time(...[$__range]) (they show a run's final state after its series went stale), and
  a promtool unit test of them 10 minutes after runs ended is written next to OUT_RULES_FILE as
  dashboard_stat_test.yml (rules_test.sh runs it).
- alerts.yml (needs PyYAML: Debian's python3-yaml): every alert has `for`, a severity, a summary
  that uses $labels, a description and a runbook annotation that resolves to a heading of
  docs/operations/monitoring.md; alerts_test.yml has, for every alert, a case where it fires and
  one where it does not; tests/observability/alert_probes.json has probes for exactly these alerts.
  Without PyYAML these checks are skipped and the script exits 77 after the dashboard checks.
"""
import json
import os
import re
import sys

SEVERITIES = {"critical", "warning", "info"}
errors = []


def err(msg):
    errors.append(msg)


def grafana_to_promql(expr, run_id=".*", rate_interval="20s", range_="5m"):
    """Replaces the dashboard's Grafana variables with values Prometheus accepts (range_: $__range, the
    length of the dashboard's time range, which an instant query ends at)."""
    for var, value in (("${__rate_interval}", rate_interval), ("$__rate_interval", rate_interval),
                       ("${__interval}", "5s"), ("$__interval", "5s"), ("${__range}", range_), ("$__range", range_),
                       ("${run_id}", run_id), ("$run_id", run_id), ("${rank}", ".*"), ("$rank", ".*")):
        expr = expr.replace(var, value)
    return expr


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def dashboard_expressions(dash):
    """(panel title, refId, expr) of every query of the dashboard."""
    for p in all_panels(dash.get("panels", [])):
        for t in p.get("targets", []) or []:
            yield p.get("title", ""), t.get("refId", ""), t.get("expr", "")


STAT_TYPES = {"stat", "gauge"}
# A selector read as its last value in the dashboard's time range: last_over_time(metric{...}[$__range]).
LAST_IN_RANGE = re.compile(r"last_over_time\(\s*[a-zA-Z_:][a-zA-Z0-9_:]*\s*\{[^{}]*\}\s*\[\s*\$(?:__range|\{__range\})\s*\]\s*\)")
METRIC = re.compile(r"\b(?:gut_[a-z0-9_]+|process_[a-z0-9_]+|up)\s*\{")


def dashboard_range(dash):
    """The length of the dashboard's default time range ("now-30m" .. "now": "30m"): Grafana's $__range."""
    m = re.fullmatch(r"now-(\d+[smhdw])", str(dash.get("time", {}).get("from", "")))
    return m.group(1) if m else None


def stat_targets(dash):
    """(panel, target) of every stat and gauge panel: one number or name each, for "now"."""
    for p in all_panels(dash.get("panels", [])):
        if p.get("type") in STAT_TYPES:
            for t in p.get("targets", []) or []:
                yield p, t


def render_legend(fmt, labels):
    """Grafana's legend: {{label}} replaced by the series' label value."""
    return re.sub(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt or "")


def check_stat_panels(path, dash):
    """Stat and gauge panels show the run's last state even after its processes exited and their series went
    stale (the coordinator exits seconds after the run ends): instant queries that read every selector as
    last_over_time(...[$__range]). A bare selector is empty 5 minutes (the lookback) after the last scrape,
    and a range query reduced to its last non-null point shows every status the run went through."""
    if dashboard_range(dash) is None:
        err(f"{path}: the dashboard's time range must be relative (time.from = now-N), got {dash.get('time')!r}")
    titles = set()
    for p, t in stat_targets(dash):
        title, ref, expr = p.get("title", ""), t.get("refId"), t.get("expr") or ""
        titles.add(title)
        if t.get("instant") is not True or t.get("range") is True:
            err(f"{path}: stat panel {title!r} target {ref}: must be an instant query (instant: true, range: false)")
        if not LAST_IN_RANGE.search(expr):
            err(f"{path}: stat panel {title!r} target {ref}: no last_over_time(...[$__range]): {expr}")
        bare = METRIC.search(LAST_IN_RANGE.sub("", expr))
        if bare:
            err(f"{path}: stat panel {title!r} target {ref}: a selector outside last_over_time(...[$__range]) "
                f"(blank once the series went stale): {bare.group(0)} in {expr}")
    for title in ("Run status", "Progress", "Epoch", "ETA", "Agents"):
        if title not in titles:
            err(f"{path}: no stat panel {title!r}")
    status = [p for p in all_panels(dash.get("panels", [])) if p.get("title") == "Run status"]
    if status and (status[0].get("options", {}).get("textMode") != "name"
                   or (status[0].get("targets") or [{}])[0].get("legendFormat") != "{{status}}"):
        err(f"{path}: the Run status panel must show the name (textMode: name) of its series, legend {{{{status}}}}")


def write_stat_panel_test(dash, out_test):
    """A promtool unit test (promql_expr_test) of the stat panels' expressions, 10 minutes after runs ended.
    Four runs, scraped every minute: "finished" and "failed" end at 4m with their final status scraped, the
    coordinator's target then fails its scrapes (up 0, as the launcher's targets file stays); "unseen" ends at
    4m with no scrape of its final status (scrapes rarer than the coordinator's --linger-s); "live" runs on.
    At 15m (with $__range the dashboard's range) the Run status panel names finished, failed and running
    (live), and its fallback names the unseen run; ETA shows only the live run; every other stat shows each
    run's last value."""
    rng = dashboard_range(dash) or "30m"
    runs = ("finished", "failed", "unseen", "live")
    ended = {"finished", "failed", "unseen"}

    def values(last, run):  # 0 at 0m, `last` from 1m to 4m, then stale (ended) or on to 20m (live)
        return f"0 {last}x3 stale" if run in ended else f"0 {last}x19"

    last_values = {"gut_coordinator_progress_ratio": 0.5, "gut_coordinator_epoch": 3, "gut_coordinator_epochs": 6,
                   "gut_coordinator_eta_seconds": 40, "gut_coordinator_agents_joined": 4,
                   "gut_coordinator_agents_expected": 4, "gut_coordinator_agents_active": 3,
                   "gut_coordinator_agents_left": 1, "gut_coordinator_agents_dropped": 0,
                   "gut_coordinator_rounds_per_second": 47.5}
    # gut_coordinator_run_status per run and status: joining at 0m, running from 1m; "finished" and "failed"
    # show their final status at 4m; "unseen" is last scraped at 4m still running.
    status_values = {
        "finished": {"joining": "1 0 0 0 0 stale", "running": "0 1 1 1 0 stale", "finished": "0 0 0 0 1 stale"},
        "failed": {"joining": "1 0 0 0 0 stale", "running": "0 1 1 1 0 stale", "failed": "0 0 0 0 1 stale"},
        "unseen": {"joining": "1 0 0 0 0 stale", "running": "0 1 1 1 1 stale"},
        "live": {"joining": "1 0x19", "running": "0 1x19"},
    }
    series = []
    for run in runs:
        labels = f'job="gut-coordinator", instance="{run}:9090", run_id="{run}"'
        series.append((f"up{{{labels}}}", "1x4 0x16" if run in ended else "1x20"))
        for name, v in last_values.items():
            series.append((f"{name}{{{labels}}}", values(v, run)))
        for st in ("joining", "running", "finished", "failed", "stopped"):
            v = status_values[run].get(st, "0x4 stale" if run in ended else "0x20")
            series.append((f'gut_coordinator_run_status{{{labels}, status="{st}"}}', v))

    def expected(title, ref, expr):
        """[(labels dict, value)] the target must return at 15m."""
        if title == "Run status":
            shown = {"A": {"finished": "finished", "failed": "failed", "live": "running"}, "B": {"unseen": "running"}}[ref]
            return [({"__name__": "gut_coordinator_run_status", "job": "gut-coordinator", "instance": f"{r}:9090",
                      "run_id": r, "status": st}, 1) for r, st in shown.items()]
        names = set(re.findall(r"\b(gut_coordinator_[a-z_]+)\{", expr)) - {"gut_coordinator_run_status"}
        if len(names) != 1:
            raise ValueError(f"stat panel {title!r} {ref}: expected one coordinator metric besides the status, got {names}")
        name = names.pop()
        shown = ["live"] if title == "ETA" else runs
        return [({"__name__": name, "job": "gut-coordinator", "instance": f"{r}:9090", "run_id": r}, last_values[name])
                for r in shown]

    lines = ["# Generated by tests/observability/static_checks.py from grafana-dashboard.json: its stat panels",
             "# 10 minutes after runs ended (write_stat_panel_test's docstring).", "evaluation_interval: 1m",
             "tests:", "  - name: stat panels keep the last state of runs that ended", "    interval: 1m",
             "    input_series:"]
    for sel, v in series:
        lines += [f"      - series: {json.dumps(sel)}", f"        values: {json.dumps(v)}"]
    lines.append("    promql_expr_test:")
    for p, t in stat_targets(dash):
        title, ref = p.get("title", ""), t.get("refId", "")
        expr = grafana_to_promql(t.get("expr", ""), run_id=".*", range_=rng)
        lines += [f"      # {title} / {ref}", f"      - expr: {json.dumps(expr)}", "        eval_time: 15m"]
        samples = expected(title, ref, t.get("expr", ""))
        lines.append("        exp_samples:" + ("" if samples else " []"))
        for labels, v in samples:
            ls = ", ".join(f'{k}="{val}"' for k, val in labels.items() if k != "__name__")
            lines += [f"          - labels: {json.dumps(labels.get('__name__', '') + '{' + ls + '}')}",
                      f"            value: {v}"]
    with open(out_test, "w") as f:
        f.write("\n".join(lines) + "\n")


def check_dashboard(path, out_rules):
    try:
        with open(path) as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        err(f"{path}: not valid JSON: {e}")
        return
    if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
        err(f"{path}: schemaVersion {dash.get('schemaVersion')!r}, expected >= 36")
    for key in ("title", "uid"):
        if not dash.get(key):
            err(f"{path}: no {key}")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        err(f"{path}: needs a variable 'datasource' of type datasource with query prometheus")
    run = variables.get("run_id")
    if not run or run.get("type") != "query":
        err(f"{path}: needs a query variable 'run_id'")
    elif run.get("datasource", {}).get("uid") != "${datasource}":
        err(f"{path}: the run_id variable must query ${{datasource}}")
    ids = {}
    n = 0
    for p in all_panels(dash.get("panels", [])):
        pid = p.get("id")
        if pid is None:
            err(f"{path}: a panel has no id: {p.get('title')!r}")
        elif pid in ids:
            err(f"{path}: panel id {pid} used by {ids[pid]!r} and {p.get('title')!r}")
        else:
            ids[pid] = p.get("title")
        if "gridPos" not in p:
            err(f"{path}: panel {p.get('title')!r} has no gridPos")
        if p.get("type") == "row":
            continue
        n += 1
        title = p.get("title", "")
        if not title.strip():
            err(f"{path}: panel {pid} has no title")
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            err(f"{path}: panel {title!r}: datasource must be {{'uid': '${{datasource}}'}}, got {p.get('datasource')!r}")
        targets = p.get("targets") or []
        if not targets:
            err(f"{path}: panel {title!r} has no targets")
        refs = set()
        for t in targets:
            ref = t.get("refId")
            if not ref or ref in refs:
                err(f"{path}: panel {title!r}: missing or repeated refId {ref!r}")
            refs.add(ref)
            if "datasource" in t and (t["datasource"] or {}).get("uid") != "${datasource}":
                err(f"{path}: panel {title!r} target {ref}: datasource must be ${{datasource}}")
            expr = (t.get("expr") or "").strip()
            if not expr:
                err(f"{path}: panel {title!r} target {ref}: empty expr")
            elif "$run_id" not in expr and "${run_id}" not in expr:
                err(f"{path}: panel {title!r} target {ref}: the expression does not filter on $run_id: {expr}")
    if n == 0:
        err(f"{path}: no panels")
    check_stat_panels(path, dash)
    # Every expression as a recording rule, for `promtool check rules`.
    with open(out_rules, "w") as f:
        f.write("groups:\n  - name: dashboard-expressions\n    rules:\n")
        for i, (title, ref, expr) in enumerate(dashboard_expressions(dash)):
            if expr.strip():
                f.write(f"      # {title} / {ref}\n      - record: dashboard:expr_{i}\n        expr: {json.dumps(grafana_to_promql(expr))}\n")
    # The stat panels' expressions, evaluated by promtool 10 minutes after runs ended.
    try:
        write_stat_panel_test(dash, os.path.join(os.path.dirname(os.path.abspath(out_rules)), "dashboard_stat_test.yml"))
    except ValueError as e:
        err(f"{path}: {e}")
    print(f"dashboard: {n} panels, {len(list(dashboard_expressions(dash)))} expressions, "
          f"{len(list(stat_targets(dash)))} stat queries (last value in the time range, unit-tested after a run ended)")


def slug(heading):
    """GitHub's anchor for a Markdown heading."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def check_alerts(src):
    import yaml  # noqa: PLC0415 (optional dependency)

    obs = os.path.join(src, "deploy", "observability")
    with open(os.path.join(obs, "alerts.yml")) as f:
        rules = yaml.safe_load(f)
    with open(os.path.join(obs, "alerts_test.yml")) as f:
        tests = yaml.safe_load(f)
    doc_path = os.path.join(src, "docs", "operations", "monitoring.md")
    anchors = set()
    if os.path.exists(doc_path):
        with open(doc_path) as f:
            for line in f:
                m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
                if m:
                    anchors.add(slug(m.group(1)))
    else:
        err(f"{doc_path} does not exist")
    alerts = []
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            if "alert" not in r:
                continue
            name = r["alert"]
            alerts.append(name)
            where = f"alerts.yml: {name}"
            if "for" not in r:
                err(f"{where}: no `for:`")
            if r.get("labels", {}).get("severity") not in SEVERITIES:
                err(f"{where}: severity label must be one of {sorted(SEVERITIES)}")
            ann = r.get("annotations", {})
            if "$labels" not in ann.get("summary", ""):
                err(f"{where}: the summary must name the object with $labels")
            if not ann.get("description"):
                err(f"{where}: no description")
            runbook = ann.get("runbook", "")
            path, _, anchor = runbook.partition("#")
            target = os.path.normpath(os.path.join(obs, path)) if path else ""
            if target != os.path.normpath(doc_path):
                err(f"{where}: runbook {runbook!r} does not point at docs/operations/monitoring.md (relative to alerts.yml)")
            elif anchor != name.lower():
                err(f"{where}: the runbook anchor must be #{name.lower()}, got #{anchor}")
            elif anchor not in anchors:
                err(f"{where}: monitoring.md has no heading '### {name}' (the runbook's anchor #{anchor})")
    names = set(alerts)
    fires, quiet = set(), set()
    for t in tests.get("tests", []):
        for case in t.get("alert_rule_test", []) or []:
            (fires if case.get("exp_alerts") else quiet).add(case.get("alertname"))
    for name in sorted(names):
        if name not in fires:
            err(f"alerts_test.yml: no case where {name} fires")
        if name not in quiet:
            err(f"alerts_test.yml: no case where {name} must stay quiet")
    for name in sorted((fires | quiet) - names):
        err(f"alerts_test.yml: tests an alert that alerts.yml does not define: {name}")
    with open(os.path.join(src, "tests", "observability", "alert_probes.json")) as f:
        probes = json.load(f)
    probed = set(probes.get("probes", {}))
    for name in sorted(names - probed):
        err(f"alert_probes.json: no probe expressions for {name} (the live test needs them)")
    for name in sorted(probed - names):
        err(f"alert_probes.json: probes for an alert that alerts.yml does not define: {name}")
    for name in sorted(set(probes.get("may_fire_on_a_healthy_run", [])) - names):
        err(f"alert_probes.json: may_fire_on_a_healthy_run names an unknown alert: {name}")
    print(f"alerts: {len(alerts)} rules, {len(names)} alert names, each tested firing and quiet, each probed")


def main():
    src, out_rules = sys.argv[1], sys.argv[2]
    check_dashboard(os.path.join(src, "deploy", "observability", "grafana-dashboard.json"), out_rules)
    try:
        import yaml  # noqa: F401, PLC0415
    except ImportError:
        for e in errors:
            print("FAIL:", e)
        if errors:
            return 1
        print("SKIP: the checks of alerts.yml against its tests, probes and runbook need PyYAML for "
              "/usr/bin/python3: apt-get install python3-yaml")
        return 77
    check_alerts(src)
    for e in errors:
        print("FAIL:", e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

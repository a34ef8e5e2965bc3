"""Structure checks of deploy/observability/ that promtool does not do (run by rules_test.sh).

  static_checks.py SOURCE_DIR OUT_RULES_FILE

- grafana-dashboard.json: valid JSON; a `datasource` variable (Prometheus) and a `run_id` variable;
  unique panel ids; every panel but rows has a title, the ${datasource} data source and targets
  whose expressions are non-empty and filter on $run_id; every dashboard expression is written,
  with Grafana's variables replaced, as a recording rule to OUT_RULES_FILE so that promtool can
  parse it.
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


def grafana_to_promql(expr, run_id=".*", rate_interval="20s"):
    """Replaces the dashboard's Grafana variables with values Prometheus accepts."""
    for var, value in (("${__rate_interval}", rate_interval), ("$__rate_interval", rate_interval),
                       ("${__interval}", "5s"), ("$__interval", "5s"), ("${__range}", "5m"), ("$__range", "5m"),
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
    # Every expression as a recording rule, for `promtool check rules`.
    with open(out_rules, "w") as f:
        f.write("groups:\n  - name: dashboard-expressions\n    rules:\n")
        for i, (title, ref, expr) in enumerate(dashboard_expressions(dash)):
            if expr.strip():
                f.write(f"      # {title} / {ref}\n      - record: dashboard:expr_{i}\n        expr: {json.dumps(grafana_to_promql(expr))}\n")
    print(f"dashboard: {n} panels, {len(list(dashboard_expressions(dash)))} expressions")


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

"""observability.prometheus_live: a real Prometheus scraping a real 4-agent cluster.

  /usr/bin/python3 prometheus_live_test.py --source SRC --build BUILD --prometheus BIN [--keep]

Starts deploy/local/run-cluster.sh (4 agents, 4 epochs of the quick Fashion-MNIST manifest, mutual
TLS) and a Prometheus of its own on a free 127.0.0.1 port with a temporary TSDB and
deploy/observability/prometheus.yml, adapted: 1 s scrapes and rule evaluations, file_sd on the two
runs' prometheus-targets.json files, alerts.yml by absolute path. Once the first run has completed
its first epoch it checks through the HTTP API that:

  - every target (the coordinator and 4 agents) is up, with job and run_id, and rank and name for
    the agents;
  - the dashboard's variables resolve and every query of grafana-dashboard.json returns at least
    one series;
  - every metric name used by an alert or the dashboard has series;
  - every probe of alert_probes.json (each alert's expression without its final comparison)
    returns at least one series;
  - every alert rule evaluates without error and its expression returns nothing on this healthy
    run (alerts in may_fire_on_a_healthy_run are reported, not failed), and none is firing.

Then (issue 21, the operator view):

  - the first run finishes (summary.json: finished) and no alert ever fired for it;
  - a second run (fault.on_peer_loss: fail, fault.rejoin_timeout_s = REJOIN_TIMEOUT_S) has agent
    KILL_RANK SIGKILLed after its first epoch: GutAgentDown fires for that rank, and no other, before the run
    fails (timestamps: the first firing sample of ALERTS in Prometheus' TSDB against the "run failed"
    line of the coordinator's log and summary.json's mtime); the failure also comes later than the
    latest GutAgentDown could fire with the shipped prometheus.yml's intervals (scrape + 2 rule
    evaluations + the rule's `for`); GutRunFailed fires for the run after the failure;
  - AFTER_END_S (10 minutes) after each run ended, long after its processes exited and their series
    went stale, the dashboard's stat panels, evaluated through /api/v1/query at that future time with
    $__range the dashboard's default range, still show the run's final state: Run status "finished"
    resp. "failed" (and nothing else), progress, epochs, agents; ETA empty.

Stops the clusters and Prometheus at the end, whatever happens (and when this process dies: all are
started with a parent-death signal).
"""
import argparse
import ctypes
import datetime
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from static_checks import (dashboard_expressions, dashboard_range, grafana_to_promql, render_legend,  # noqa: E402
                           stat_targets)

AGENTS = 4
EPOCHS = 4  # the checks of the healthy run end during epoch 2 (about 7 s per epoch on 2 cores)
RATE_INTERVAL = "10s"  # stands for Grafana's $__rate_interval at a 1 s scrape interval
# Dashboard queries that return nothing on a healthy running run, by design: the Run status fallback
# shows only when the coordinator is gone and no scrape saw its final status (unit-tested by the
# promtool test that static_checks.py writes; here it must stay empty).
EMPTY_ON_A_LIVE_RUN = {("Run status", "B")}
# The failing run: agent KILL_RANK is SIGKILLed after the first epoch; the coordinator marks it lost
# after --heartbeat-timeout-s (5 s) without a heartbeat and fails the run fault.rejoin_timeout_s after
# its last heartbeat (agents send one every 0.25 s). GutAgentDown (for: 20s) must fire before that.
KILL_RANK = 2
REJOIN_TIMEOUT_S = 45
FAILING_RUN_EPOCHS = 30  # never reached: the run fails within a minute of the kill
AFTER_END_S = 600  # the dashboard must still show the final state this long after a run ended
T0 = time.monotonic()
failures = []
notes = []


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def fail(msg):
    failures.append(msg)
    log("FAIL: " + msg)


def die_with_parent():
    """preexec_fn: SIGTERM this child when the test process dies (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def shipped_intervals(shipped):
    """(scrape_interval, evaluation_interval) of the shipped prometheus.yml, in seconds."""
    def seconds(key):
        m = re.search(rf"^\s*{key}:\s*(\d+)s\s*$", shipped, re.M)
        if not m:
            raise RuntimeError(f"prometheus.yml changed shape: no '{key}: Ns'")
        return int(m.group(1))
    return seconds("scrape_interval"), seconds("evaluation_interval")


def live_config(shipped, targets_files, rules_file):
    """deploy/observability/prometheus.yml with 1 s scrapes and evaluations, these runs' targets files
    and the rules by absolute path: the shipped scrape configuration is the one under test. A targets
    file that does not exist yet is picked up once it does (file_sd re-reads the list every 2 s)."""
    text = shipped
    m = re.search(r"^( *)- \.\./\.\./out/quick/prometheus-targets\.json$", text, re.M)
    indent = m.group(1) if m else ""
    for old, new in (("scrape_interval: 5s", "scrape_interval: 1s"), ("scrape_timeout: 4s", "scrape_timeout: 1s"),
                     ("evaluation_interval: 5s", "evaluation_interval: 1s"),
                     ("- ../../out/quick/prometheus-targets.json",
                      f"\n{indent}".join("- " + json.dumps(f) for f in targets_files)),
                     ("refresh_interval: 30s", "refresh_interval: 2s"),
                     ("- alerts.yml", "- " + json.dumps(rules_file))):
        if text.count(old) != 1:
            raise RuntimeError(f"prometheus.yml changed shape: expected one '{old}' to adapt for the test")
        text = text.replace(old, new)
    return text


class Prometheus:
    def __init__(self, binary, workdir, config_text):
        self.binary, self.workdir = binary, workdir
        self.proc = None
        self.base = None
        os.makedirs(workdir, exist_ok=True)
        self.config = os.path.join(workdir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write(config_text)

    def start(self):
        for attempt in range(3):
            port = free_port()
            self.base = f"http://127.0.0.1:{port}"
            self.log = open(os.path.join(self.workdir, f"prometheus-{attempt}.log"), "w")
            self.proc = subprocess.Popen(
                [self.binary, f"--config.file={self.config}", f"--storage.tsdb.path={self.workdir}/data",
                 f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h",
                 "--web.enable-lifecycle"],
                stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with urllib.request.urlopen(self.base + "/-/ready", timeout=2) as r:
                        if r.status == 200:
                            log(f"prometheus ready on {self.base}")
                            return True
                except (urllib.error.URLError, OSError):
                    pass
                time.sleep(0.3)
            self.stop()
            log(f"prometheus did not start on port {port} (attempt {attempt + 1}); log: {self.log.name}")
        return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def api(self, path, **params):
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr, at=None):
        data = self.api("query", query=expr, **({"time": f"{at:.3f}"} if at is not None else {}))
        return data["result"] if data["resultType"] == "vector" else [data["result"]]

    def samples(self, expr, seconds):
        """The raw samples of the series `expr` selects over the last `seconds`: [(labels, [(t, value)])]."""
        data = self.api("query", query=f"{expr}[{int(seconds)}s]")
        return [(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]


class Cluster:
    def __init__(self, source, build, out, epochs=EPOCHS, settings=()):
        self.out = out
        self.log_path = out + ".log"
        self.targets_file = os.path.join(out, "prometheus-targets.json")
        env = dict(os.environ, GUT_BUILD_DIR=build)
        sets = [f"agents.count={AGENTS}", f"run.epochs={epochs}", *settings]
        self.proc = subprocess.Popen(
            ["bash", os.path.join(source, "deploy/local/run-cluster.sh"),
             "--manifest", os.path.join(source, "deploy/examples/fmnist-ring16-qggutm-quick.yaml"),
             "--out", out, *[a for kv in sets for a in ("--set", kv)]],
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True, preexec_fn=die_with_parent)

    def summary_status(self):
        try:
            with open(os.path.join(self.out, "summary.json")) as f:
                return json.load(f).get("status")
        except (OSError, ValueError):
            return None

    def pid_of_agent(self, rank):
        with open(os.path.join(self.out, "pids", f"agent-{rank:02d}.pid")) as f:
            return int(f.read().strip())

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=20):
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        """SIGTERM to the launcher (it stops every agent and the coordinator), SIGKILL to its group after 25 s."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(25)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the launcher's own process group (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass
        if self.proc.poll() is None:
            self.proc.wait()


def wait_for(what, predicate, timeout, cluster=None, step=1.0):
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if cluster is not None and not cluster.alive():
            raise RuntimeError(f"the cluster exited (status {cluster.proc.returncode}) while waiting for {what}:\n"
                               + cluster.tail())
        try:
            value = predicate()
            if value:
                return value
        except (RuntimeError, OSError, ValueError, KeyError) as e:
            last_error = e
        time.sleep(step)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def read_targets(path):
    try:
        with open(path) as f:
            groups = json.load(f)
    except (OSError, ValueError):
        return None
    return groups if len(groups) == AGENTS + 1 else None


def retrying(checks, prom, attempts=6, pause=2.0):
    """checks: (name, expr) pairs that must each return >= 1 series; retries the empty ones a few times
    (a rate needs two samples; a series can appear a scrape later). Returns {name: error} of the failures."""
    pending = dict(checks)
    errors = {}
    for attempt in range(attempts):
        errors = {}
        for name, expr in pending.items():
            try:
                if not prom.query(expr):
                    errors[name] = f"no series: {expr}"
            except RuntimeError as e:
                errors[name] = str(e)
        if not errors:
            return {}
        pending = {n: pending[n] for n in errors}
        if attempt + 1 < attempts:
            time.sleep(pause)
    return errors


def check_targets(prom, cluster, run_id):
    """Every target of the run is up with its labels."""
    def all_up():
        active = [t for t in prom.api("targets", state="active")["activeTargets"] if t["labels"].get("run_id") == run_id]
        return active if len(active) == AGENTS + 1 and all(t["health"] == "up" for t in active) else None

    try:
        active = wait_for(f"every target of run {run_id} up", all_up, 30, cluster)
    except RuntimeError as e:
        fail(str(e))
        active = [t for t in prom.api("targets", state="active")["activeTargets"] if t["labels"].get("run_id") == run_id]
    ranks = set()
    for t in active:
        labels = t["labels"]
        where = f"target {t['scrapeUrl']} ({t['health']}{': ' + t['lastError'] if t.get('lastError') else ''})"
        if t["health"] != "up":
            fail(f"{where} is not up")
        if labels.get("run_id") != run_id:
            fail(f"{where}: run_id label {labels.get('run_id')!r}, expected {run_id!r}")
        if labels.get("job") == "gut-agent":
            if not labels.get("rank") or labels.get("name") != f"agent-{labels.get('rank')}":
                fail(f"{where}: agent target without rank/name labels: {labels}")
            ranks.add(labels.get("rank"))
        elif labels.get("job") != "gut-coordinator":
            fail(f"{where}: unexpected job label {labels.get('job')!r}")
    if ranks != {str(r) for r in range(AGENTS)}:
        fail(f"agent targets have ranks {sorted(ranks)}, expected 0..{AGENTS - 1}")
    log(f"targets: {len(active)} active, ranks {sorted(ranks)}")


def check_healthy_run(prom, cluster, run_id, dashboard, probes, may_fire):
    """After the first epoch: the dashboard's variables and queries, the metric names, the alert probes
    return data; no alert expression returns anything."""
    def under_way():
        return (prom.query(f'gut_coordinator_epoch{{run_id="{run_id}"}} >= 1')
                and prom.query(f'gut_coordinator_consensus_distance{{run_id="{run_id}"}} > 0')
                and len(prom.query(f'gut_agent_test_accuracy_ratio{{run_id="{run_id}"}}')) == AGENTS
                and len(prom.query(f'gut_agent_checkpoints_total{{run_id="{run_id}"}} > 0')) == AGENTS)

    wait_for("the first epoch to be evaluated and checkpointed", under_way, 240, cluster)
    log("epoch 1 done; waiting 4 s for the rates")
    time.sleep(4)
    checks_started = time.monotonic()

    # ---- dashboard variables and queries
    values = prom.api("label/run_id/values", **{"match[]": 'up{job=~"gut-.*"}'})
    if run_id not in values:
        fail(f"dashboard variable run_id: label_values(up{{job=~\"gut-.*\"}}, run_id) = {values}, no {run_id}")
    values = prom.api("label/rank/values", **{"match[]": f'up{{job="gut-agent", run_id=~"{run_id}"}}'})
    if sorted(values) != [str(r) for r in range(AGENTS)]:
        fail(f"dashboard variable rank: {values}")
    dash_checks = []
    for title, ref, expr in dashboard_expressions(dashboard):
        promql = grafana_to_promql(expr, run_id=run_id, rate_interval=RATE_INTERVAL)
        if (title, ref) in EMPTY_ON_A_LIVE_RUN:
            if prom.query(promql):
                fail(f"dashboard {title!r} {ref} returns series on a live run: {prom.query(promql)}")
            continue
        dash_checks.append((f"dashboard {title!r} {ref}", promql))
    errors = retrying(dash_checks, prom)
    for name, e in errors.items():
        fail(f"{name}: {e}")
    log(f"dashboard: {len(dash_checks) - len(errors)}/{len(dash_checks)} queries return data "
        f"(and {len(EMPTY_ON_A_LIVE_RUN)} none, as they must on a live run)")

    # ---- the alert rules Prometheus loaded
    def evaluated_rules():
        rules = [r for g in prom.api("rules")["groups"] for r in g["rules"] if r["type"] == "alerting"]
        return rules if rules and all(not r.get("lastEvaluation", "").startswith("0001") for r in rules) else None

    rules = wait_for("every alert rule evaluated", evaluated_rules, 20)
    names = {r["name"] for r in rules}
    if names != set(probes):
        fail(f"loaded alert rules {sorted(names)} differ from alert_probes.json's {sorted(probes)}")

    # ---- every metric name the alerts and the dashboard use has series
    used = set()
    for text in [r["query"] for r in rules] + [e for _, _, e in dashboard_expressions(dashboard)]:
        used |= set(re.findall(r"\b((?:gut|process)_[a-z0-9_]+)\b", text))
        if re.search(r"\bup\{", text):
            used.add("up")
    errors = retrying([(n, f'count({{__name__="{n}", run_id="{run_id}"}})') for n in sorted(used)], prom)
    for name, e in errors.items():
        fail(f"metric {name} has no series in run {run_id}")
    log(f"metric names: {len(used) - len(errors)}/{len(used)} used by the alerts and the dashboard have series")

    # ---- probes
    probe_checks = [(f"{alert} probe {i + 1}", expr) for alert, exprs in probes.items() for i, expr in enumerate(exprs)]
    errors = retrying(probe_checks, prom)
    for name, e in errors.items():
        fail(f"{name}: {e}")
    log(f"alert probes: {len(probe_checks) - len(errors)}/{len(probe_checks)} return data")

    # ---- the alerts themselves stay quiet on a healthy run
    for g in prom.api("rules")["groups"]:
        for r in g["rules"]:
            if r["type"] != "alerting":
                continue
            label = r["name"] + (f" ({r['labels'].get('signal')})" if r["labels"].get("signal") else "")
            if r.get("health") != "ok":
                fail(f"rule {label}: health {r.get('health')}: {r.get('lastError')}")
            result = prom.query(r["query"])
            if result:
                shown = ", ".join(f"{x['metric']} = {x['value'][1]}" for x in result[:4])
                if r["name"] in may_fire:
                    notes.append(f"{label} would fire on this healthy run (allowed: a loaded machine): {shown}")
                    log("note: " + notes[-1])
                else:
                    fail(f"alert {label} returns series on a healthy run: {shown}")
    for a in prom.api("alerts")["alerts"]:
        if a["state"] == "firing" and a["labels"]["alertname"] not in may_fire:
            fail(f"alert firing on a healthy run: {a['labels']}")
    log(f"checks took {time.monotonic() - checks_started:.1f} s")
    if not cluster.alive():
        fail(f"the cluster exited during the checks (status {cluster.proc.returncode}): the run must still be "
             "going for them to mean anything; raise EPOCHS\n" + cluster.tail())


def wait_until_ended(cluster, timeout):
    """Waits for the launcher to exit; returns (exit status, wall-clock time it was seen gone)."""
    try:
        rc = cluster.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the run in {cluster.out} did not end within {timeout} s:\n{cluster.tail()}") from None
    return rc, time.time()


def log_time(line):
    """The UTC timestamp that starts a text log line ("2026-01-02T03:04:05.678Z info ..."), as epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z\s", line)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc).timestamp()


def first_sample(series, **labels):
    """The earliest sample time among the series whose labels include `labels` (None if none)."""
    times = [ts[0][0] for m, ts in series if ts and all(m.get(k) == v for k, v in labels.items())]
    return min(times) if times else None


def check_agent_down_before_failure(prom, cluster, run_id, shipped):
    """Kills agent KILL_RANK of a running run; GutAgentDown must fire for it, and only it, before the
    coordinator fails the run. Returns the wall-clock time the run was seen to end."""
    def running():
        return (len(prom.query(f'up{{run_id="{run_id}"}} == 1')) == AGENTS + 1
                and prom.query(f'gut_coordinator_run_status{{run_id="{run_id}", status="running"}} == 1')
                and prom.query(f'gut_coordinator_epoch{{run_id="{run_id}"}} >= 1')
                and len(prom.query(f'gut_coordinator_agent_up{{run_id="{run_id}"}} == 1')) == AGENTS)

    wait_for(f"run {run_id} through its first epoch, every target up and every agent heartbeating", running, 240,
             cluster, step=0.5)
    pid = cluster.pid_of_agent(KILL_RANK)
    os.kill(pid, signal.SIGKILL)
    t_kill = time.time()
    log(f"SIGKILLed agent {KILL_RANK} (pid {pid}); the coordinator fails the run about {REJOIN_TIMEOUT_S} s from now")

    # Watch the alert as an operator would (its annotations), until the run ends.
    seen_firing = None
    deadline = time.monotonic() + REJOIN_TIMEOUT_S + 60
    while cluster.alive() and time.monotonic() < deadline:
        for a in prom.api("alerts")["alerts"]:
            if (seen_firing is None and a["state"] == "firing" and a["labels"].get("alertname") == "GutAgentDown"
                    and a["labels"].get("run_id") == run_id):
                seen_firing = (time.time(), a)
                log(f"GutAgentDown firing: {a['annotations'].get('summary')!r}")
        time.sleep(0.5)
    rc, t_end = wait_until_ended(cluster, 30)
    log(f"run {run_id} ended {t_end - t_kill:.1f} s after the kill (launcher status {rc})")
    time.sleep(3)  # the last rule evaluations and scrapes reach the TSDB

    # When the coordinator failed the run: its log line, and summary.json (written right after).
    t_fail_log = failure = None
    with open(os.path.join(cluster.out, "logs", "coordinator.log"), errors="replace") as f:
        for line in f:
            if "run failed: " in line and t_fail_log is None:
                t_fail_log, failure = log_time(line), line.split("run failed: ", 1)[1].strip()
    summary_path = os.path.join(cluster.out, "summary.json")
    t_summary = os.path.getmtime(summary_path) if os.path.exists(summary_path) else None
    if cluster.summary_status() != "failed":
        fail(f"run {run_id}: summary.json status {cluster.summary_status()!r}, expected failed")
    if rc == 0:
        fail(f"run {run_id}: the launcher exited 0 after agent {KILL_RANK} was killed (expected the run to fail)")
    if t_fail_log is None:
        fail(f"run {run_id}: the coordinator's log has no 'run failed: ' line:\n{cluster.tail()}")
        return t_end
    if f"agent {KILL_RANK} " not in failure:
        fail(f"run {run_id}: the failure does not name agent {KILL_RANK}: {failure}")

    # When GutAgentDown fired: the first sample of ALERTS{alertstate="firing"} (the evaluation time).
    window = time.time() - t_kill + 60
    alerts = prom.samples(f'ALERTS{{alertname="GutAgentDown", run_id="{run_id}"}}', window)
    t_pending = first_sample(alerts, alertstate="pending", rank=str(KILL_RANK))
    t_fire = first_sample(alerts, alertstate="firing", rank=str(KILL_RANK))
    # Other ranks: never firing, and not even pending before the failure (when the run fails, the other
    # agents exit and a scrape may see one gone a moment before it sees the coordinator's new status).
    others = sorted({m.get("rank") for m, ts in alerts if m.get("rank") != str(KILL_RANK)
                     and (m.get("alertstate") == "firing" or any(t < t_fail_log for t, _ in ts))})
    run_failed = prom.samples(f'ALERTS{{alertname="GutRunFailed", alertstate="firing", run_id="{run_id}"}}', window)
    t_run_failed = first_sample(run_failed)
    scrape_s, eval_s = shipped_intervals(shipped)
    rule = [r for g in prom.api("rules")["groups"] for r in g["rules"] if r.get("name") == "GutAgentDown"]
    if not rule:
        fail("Prometheus has no rule GutAgentDown")
    for_s = float(rule[0].get("duration", 0)) if rule else 0.0  # its `for:`
    worst = scrape_s + 2 * eval_s + for_s

    def rel(t):
        return f"{t - t_kill:+.1f} s" if t is not None else "never"

    timings = (f"kill at 0 s; GutAgentDown pending {rel(t_pending)}, firing {rel(t_fire)} (seen by polling "
               f"{rel(seen_firing[0] if seen_firing else None)}); the coordinator logged the failure {rel(t_fail_log)}, "
               f"summary.json {rel(t_summary)}; GutRunFailed firing {rel(t_run_failed)}; the run ended {rel(t_end)}")
    log("timings: " + timings)
    notes.append("failing run: " + timings)
    if t_fire is None:
        fail(f"GutAgentDown never fired for rank {KILL_RANK} of run {run_id} (ALERTS: {alerts})")
    else:
        if not t_fire < t_fail_log:
            fail(f"GutAgentDown fired for rank {KILL_RANK} {t_fire - t_fail_log:.1f} s after the coordinator "
                 f"logged the failure: it must page before the run fails")
        if t_summary is not None and not t_fire < t_summary:
            fail(f"GutAgentDown fired {t_fire - t_summary:.1f} s after summary.json said failed")
        if t_fire < t_kill + for_s - 1:
            fail(f"GutAgentDown fired {t_fire - t_kill:.1f} s after the kill, sooner than its for: {for_s:g}s allows")
    if seen_firing is None:
        fail(f"GutAgentDown was never seen firing through /api/v1/alerts while run {run_id} was going")
    elif f"rank {KILL_RANK} " not in seen_firing[1]["annotations"].get("summary", ""):
        fail(f"GutAgentDown's summary does not name rank {KILL_RANK}: {seen_firing[1]['annotations']}")
    if others:
        fail(f"GutAgentDown fired, or went pending before the failure, for rank(s) {others} of run {run_id}, "
             "which stayed up")
    # With the shipped intervals the scrape that fails comes up to scrape_s after the kill, the rule sees it
    # up to eval_s later and fires at the first evaluation after `for`: the failure must come later still.
    if not t_fail_log - t_kill > worst:
        fail(f"the run failed {t_fail_log - t_kill:.1f} s after the kill: with the shipped prometheus.yml "
             f"({scrape_s} s scrapes, {eval_s} s evaluations, for: {for_s:g}s) GutAgentDown can take up to "
             f"{worst:g} s to fire")
    if t_run_failed is None:
        fail(f"GutRunFailed never fired for run {run_id}")
    elif t_run_failed < t_fail_log - 0.5:
        fail(f"GutRunFailed fired {t_fail_log - t_run_failed:.1f} s before the coordinator logged the failure")
    return t_end


def check_final_state(prom, dashboard, run_id, final_status, t_end, epochs):
    """AFTER_END_S after the run ended, the dashboard's stat panels still show its final state."""
    at = t_end + AFTER_END_S
    rng = dashboard_range(dashboard)
    shown, values = [], {}
    for p, t in stat_targets(dashboard):
        title, ref = p.get("title", ""), t.get("refId", "")
        expr = grafana_to_promql(t.get("expr", ""), run_id=run_id, rate_interval=RATE_INTERVAL, range_=rng)
        result = prom.query(expr, at=at)
        if title == "Run status":
            shown += [render_legend(t.get("legendFormat"), r["metric"]) for r in result]
        elif title == "ETA":
            if result:
                fail(f"run {run_id}, {AFTER_END_S} s after it ended: ETA shows {result} (expected nothing)")
        elif len(result) != 1:
            fail(f"run {run_id}, {AFTER_END_S} s after it ended: stat panel {title!r} {ref} returns "
                 f"{len(result)} series (expected 1): {expr}")
        else:
            values[(title, ref)] = float(result[0]["value"][1])
    if shown != [final_status]:
        fail(f"run {run_id}, {AFTER_END_S} s after it ended: the Run status panel shows {shown}, "
             f"expected [{final_status!r}]")
    expect = {("Epoch", "B"): epochs, ("Agents", "A"): AGENTS, ("Agents", "B"): AGENTS}
    if final_status == "finished":
        expect.update({("Progress", "A"): 1.0, ("Epoch", "A"): epochs, ("Agents", "D"): AGENTS})
    for key, want in expect.items():
        if key in values and values[key] != want:
            fail(f"run {run_id}, {AFTER_END_S} s after it ended: {key[0]} {key[1]} = {values[key]}, expected {want}")
    if not 1 <= values.get(("Epoch", "A"), 0) <= epochs:
        fail(f"run {run_id}, {AFTER_END_S} s after it ended: Epoch A = {values.get(('Epoch', 'A'))}, expected the "
             f"last epoch the run completed (1 .. {epochs})")
    bare = prom.query(f'gut_coordinator_run_status{{run_id="{run_id}"}} == 1', at=at)
    log(f"run {run_id}, {AFTER_END_S} s after it ended ($__range = {rng}): Run status {shown}, "
        + ", ".join(f"{k[0]} {k[1]} = {v:g}" for k, v in values.items())
        + f" (the former expression without last_over_time: {len(bare)} series)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    obs = os.path.join(args.source, "deploy", "observability")
    with open(os.path.join(obs, "grafana-dashboard.json")) as f:
        dashboard = json.load(f)
    with open(os.path.join(args.source, "tests", "observability", "alert_probes.json")) as f:
        probes_file = json.load(f)
    probes, may_fire = probes_file["probes"], set(probes_file.get("may_fire_on_a_healthy_run", []))
    with open(os.path.join(obs, "prometheus.yml")) as f:
        shipped = f.read()

    tmp = tempfile.mkdtemp(prefix="gut-observability-live-")
    log(f"working in {tmp}")
    clusters = []
    prom = None

    def on_signal(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        # ---- run 1: healthy, to the end
        cluster = Cluster(args.source, args.build, os.path.join(tmp, "run"))
        clusters.append(cluster)
        failing_out = os.path.join(tmp, "run-fail")
        log(f"cluster starting: {AGENTS} agents, {EPOCHS} epochs (log: {cluster.log_path})")
        groups = wait_for("prometheus-targets.json with every agent", lambda: read_targets(cluster.targets_file), 120,
                          cluster)
        run_id = groups[0]["labels"]["run_id"]
        log(f"targets file lists {len(groups)} targets of run {run_id}")

        config = live_config(shipped, [cluster.targets_file, os.path.join(failing_out, "prometheus-targets.json")],
                             os.path.join(obs, "alerts.yml"))
        prom = Prometheus(args.prometheus, os.path.join(tmp, "prometheus"), config)
        if not prom.start():
            raise RuntimeError("could not start prometheus")
        check_targets(prom, cluster, run_id)
        check_healthy_run(prom, cluster, run_id, dashboard, probes, may_fire)

        rc, t_end_1 = wait_until_ended(cluster, 300)
        log(f"run {run_id} ended (launcher status {rc}, summary.json {cluster.summary_status()!r})")
        if rc != 0 or cluster.summary_status() != "finished":
            fail(f"run {run_id} did not finish: launcher status {rc}, summary.json {cluster.summary_status()!r}\n"
                 + cluster.tail())

        # ---- run 2: an agent is killed, the run fails
        failing = Cluster(args.source, args.build, failing_out, epochs=FAILING_RUN_EPOCHS,
                          settings=["fault.on_peer_loss=fail", f"fault.rejoin_timeout_s={REJOIN_TIMEOUT_S}"])
        clusters.append(failing)
        log(f"failing run starting (log: {failing.log_path})")
        groups = wait_for("the failing run's prometheus-targets.json", lambda: read_targets(failing.targets_file), 120,
                          failing)
        failing_id = groups[0]["labels"]["run_id"]
        if failing_id == run_id:
            fail(f"both runs have the run id {run_id}")
        check_targets(prom, failing, failing_id)
        t_end_2 = check_agent_down_before_failure(prom, failing, failing_id, shipped)

        # ---- the finished run never alerted
        fired = {m.get("alertname") for m, _ in prom.samples(f'ALERTS{{run_id="{run_id}", alertstate="firing"}}',
                                                             time.monotonic() - T0 + 60)}
        if fired - may_fire:
            fail(f"alerts fired for the run that finished: {sorted(fired - may_fire)}")

        # ---- 10 minutes later, the dashboard still shows how each run ended
        check_final_state(prom, dashboard, run_id, "finished", t_end_1, EPOCHS)
        check_final_state(prom, dashboard, failing_id, "failed", t_end_2, FAILING_RUN_EPOCHS)
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        fail(str(e))
    finally:
        if prom:
            prom.stop()
        for c in clusters:
            c.stop()
        if clusters:
            log("clusters stopped")
        if args.keep or failures:
            log(f"kept {tmp} (cluster logs {tmp}/run.log and {tmp}/run-fail.log, prometheus logs in {tmp}/prometheus)")
        else:
            subprocess.run(["rm", "-rf", tmp], check=False)
    for n in notes:
        print("note:", n)
    if failures:
        print(f"observability.prometheus_live: FAILED ({len(failures)} problems, {time.monotonic() - T0:.0f} s)")
        for f_ in failures:
            print("  -", f_.splitlines()[0])
        return 1
    print(f"observability.prometheus_live: passed ({time.monotonic() - T0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

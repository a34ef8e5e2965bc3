"""observability.prometheus_live: a real Prometheus scraping a real 4-agent cluster.

  /usr/bin/python3 prometheus_live_test.py --source SRC --build BUILD --prometheus BIN [--keep]

Starts deploy/local/run-cluster.sh (4 agents, 6 epochs of the quick Fashion-MNIST manifest, mutual
TLS) and a Prometheus of its own on a free 127.0.0.1 port with a temporary TSDB and
deploy/observability/prometheus.yml, adapted: 1 s scrapes and rule evaluations, file_sd on this
run's prometheus-targets.json, alerts.yml by absolute path. Once
the run has completed its first epoch it checks through the HTTP API that:

  - every target (the coordinator and 4 agents) is up, with job and run_id, and rank and name for
    the agents;
  - the dashboard's variables resolve and every query of grafana-dashboard.json returns at least
    one series;
  - every metric name used by an alert or the dashboard has series;
  - every probe of alert_probes.json (each alert's expression without its final comparison)
    returns at least one series;
  - every alert rule evaluates without error and its expression returns nothing on this healthy
    run (alerts in may_fire_on_a_healthy_run are reported, not failed), and none is firing.

Stops the cluster and Prometheus at the end, whatever happens (and when this process dies: both are
started with a parent-death signal).
"""
import argparse
import ctypes
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
from static_checks import dashboard_expressions, grafana_to_promql  # noqa: E402

AGENTS = 4
EPOCHS = 6
RATE_INTERVAL = "10s"  # stands for Grafana's $__rate_interval at a 1 s scrape interval
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


def live_config(shipped, targets_file, rules_file):
    """deploy/observability/prometheus.yml with 1 s scrapes and evaluations, this run's targets file
    and the rules by absolute path: the shipped scrape configuration is the one under test."""
    text = shipped
    for old, new in (("scrape_interval: 5s", "scrape_interval: 1s"), ("scrape_timeout: 4s", "scrape_timeout: 1s"),
                     ("evaluation_interval: 5s", "evaluation_interval: 1s"),
                     ("- ../../out/quick/prometheus-targets.json", "- " + json.dumps(targets_file)),
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

    def query(self, expr):
        data = self.api("query", query=expr)
        return data["result"] if data["resultType"] == "vector" else [data["result"]]


class Cluster:
    def __init__(self, source, build, out):
        self.out = out
        self.log_path = out + ".log"
        env = dict(os.environ, GUT_BUILD_DIR=build)
        self.proc = subprocess.Popen(
            ["bash", os.path.join(source, "deploy/local/run-cluster.sh"),
             "--manifest", os.path.join(source, "deploy/examples/fmnist-ring16-qggutm-quick.yaml"),
             "--out", out, "--set", f"agents.count={AGENTS}", "--set", f"run.epochs={EPOCHS}"],
            stdout=open(self.log_path, "w"), stderr=subprocess.STDOUT, env=env,
            start_new_session=True, preexec_fn=die_with_parent)

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

    tmp = tempfile.mkdtemp(prefix="gut-observability-live-")
    log(f"working in {tmp}")
    cluster = prom = None

    def on_signal(signum, _frame):
        raise SystemExit(f"interrupted by signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        run_out = os.path.join(tmp, "run")
        cluster = Cluster(args.source, args.build, run_out)
        log(f"cluster starting: {AGENTS} agents, {EPOCHS} epochs (log: {cluster.log_path})")
        targets_file = os.path.join(run_out, "prometheus-targets.json")
        groups = wait_for("prometheus-targets.json with every agent", lambda: read_targets(targets_file), 120, cluster)
        run_id = groups[0]["labels"]["run_id"]
        log(f"targets file lists {len(groups)} targets of run {run_id}")

        with open(os.path.join(obs, "prometheus.yml")) as f:
            config = live_config(f.read(), targets_file, os.path.join(obs, "alerts.yml"))
        prom = Prometheus(args.prometheus, os.path.join(tmp, "prometheus"), config)
        if not prom.start():
            raise RuntimeError("could not start prometheus")

        # ---- targets
        def all_up():
            active = prom.api("targets", state="active")["activeTargets"]
            return active if len(active) == AGENTS + 1 and all(t["health"] == "up" for t in active) else None

        try:
            active = wait_for("every target up", all_up, 30, cluster)
        except RuntimeError as e:
            fail(str(e))
            active = prom.api("targets", state="active")["activeTargets"]
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

        # ---- wait until the run is under way: an epoch evaluated, a checkpoint written everywhere
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
        for i, (title, ref, expr) in enumerate(dashboard_expressions(dashboard)):
            dash_checks.append((f"dashboard {title!r} {ref}",
                                grafana_to_promql(expr, run_id=run_id, rate_interval=RATE_INTERVAL)))
        errors = retrying(dash_checks, prom)
        for name, e in errors.items():
            fail(f"{name}: {e}")
        log(f"dashboard: {len(dash_checks) - len(errors)}/{len(dash_checks)} queries return data")

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
        rules = prom.api("rules")["groups"]
        for g in rules:
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
    except (RuntimeError, OSError, ValueError, KeyError) as e:
        fail(str(e))
    finally:
        if prom:
            prom.stop()
        if cluster:
            cluster.stop()
            log("cluster stopped")
        if args.keep or failures:
            log(f"kept {tmp} (cluster log {os.path.join(tmp, 'run.log')}, prometheus logs in {tmp}/prometheus)")
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

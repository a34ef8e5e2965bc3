"""The checks of the deploy/k8s structure test (tests/deploy/k8s_structure_test.py): one Checker
per rendering collects every finding as "WHERE: MESSAGE"; see that file's docstring for what is
checked and why.
"""
import os
import re
import shutil
import subprocess
import tempfile

import yaml

from k8s_structure_lib import (ANY, API_VERSIONS, EXTERNAL_SECRETS, META, POD_INDEX_LABEL, SPECS, VAR, binary_of,
                               object_keys, one, parse_args, port_of, quantity_cpu, subset)


class Checker:
    def __init__(self, source, bins, work):
        self.source = source
        self.bins = bins
        self.work = work
        self.errors = []
        self.secret_cache = {}

    def err(self, where, msg):
        self.errors.append(f"{where}: {msg}")

    # --------------------------------------------------------------------------------------------
    def check(self, docs, name, deep=True):
        """All checks on one rendering; deep adds the ones that run programs."""
        by_kind = {}
        for d in docs:
            for key in ("apiVersion", "kind", "metadata"):
                if key not in d:
                    self.err(name, f"a document without {key}")
            kind = d.get("kind")
            where = f"{name}: {kind}/{d.get('metadata', {}).get('name')}"
            if not d.get("metadata", {}).get("name"):
                self.err(where, "no metadata.name")
            by_kind.setdefault(kind, []).append(d)
            if kind in API_VERSIONS and d.get("apiVersion") != API_VERSIONS[kind]:
                self.err(where, f"apiVersion {d.get('apiVersion')}, expected {API_VERSIONS[kind]}")
            top = {"apiVersion": None, "kind": None, "metadata": META}
            if kind == "ConfigMap":
                top.update({"data": ANY, "binaryData": ANY})
            elif kind in SPECS:
                top["spec"] = SPECS[kind]
            else:
                self.err(where, "a kind this test does not know (extend its allowlist)")
                continue
            errs = []
            object_keys(d, top, kind, errs)
            for e in errs:
                self.err(where, e)
        for kind, minimum in (("StatefulSet", 1), ("Deployment", 1), ("Service", 2), ("ConfigMap", 1),
                              ("PodDisruptionBudget", 1), ("PersistentVolumeClaim", 1)):
            if len(by_kind.get(kind, [])) < minimum:
                self.err(name, f"expected at least {minimum} {kind}, found {len(by_kind.get(kind, []))}")
        if self.errors_in(name):
            return
        sts_list, deps = by_kind["StatefulSet"], by_kind["Deployment"]
        workloads = sts_list + deps
        services = by_kind.get("Service", [])
        for w in workloads:
            self.check_workload(w, by_kind, name)
        for s in services:
            self.check_service(s, workloads, name)
        for p in by_kind.get("PodDisruptionBudget", []):
            self.check_pdb(p, workloads, name)
        for m in by_kind.get("ServiceMonitor", []):
            self.check_monitor(m, services, name)
        agent, coordinator = self.find_pair(sts_list, deps, name)
        if agent is None or coordinator is None:
            return
        self.check_agents(agent, services, name)
        self.check_coordinator(coordinator, agent, services, by_kind, name, deep)

    def errors_in(self, name):
        return any(e.startswith(name + ":") for e in self.errors)

    def find_pair(self, sts_list, deps, name):
        agent = next((s for s in sts_list if binary_of(s["spec"]["template"]["spec"]["containers"][0])[0] == "gut-agentd"), None)
        coord = next((d for d in deps if binary_of(d["spec"]["template"]["spec"]["containers"][0])[0] == "gut-coordinator"), None)
        if agent is None:
            self.err(name, "no StatefulSet runs gut-agentd")
        if coord is None:
            self.err(name, "no Deployment runs gut-coordinator")
        return agent, coord

    # --------------------------------------------------------------------------------------------
    def check_workload(self, w, by_kind, name):
        kind, wname = w["kind"], w["metadata"]["name"]
        where = f"{name}: {kind}/{wname}"
        spec = w["spec"]
        tmpl = spec["template"]
        labels = tmpl.get("metadata", {}).get("labels", {})
        sel = spec.get("selector", {}).get("matchLabels", {})
        if not subset(sel, labels):
            self.err(where, f"selector {sel} does not match the pod template's labels {labels}")
        pod = tmpl["spec"]
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != 10001:
            self.err(where, "pod securityContext: runAsNonRoot: true and runAsUser: 10001 expected")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        for dup in {v["name"] for v in pod.get("volumes", [])} & claims:
            self.err(where, f"volume {dup} is both a volume and a volumeClaimTemplate")
        mounted = set()
        pvcs = {p["metadata"]["name"] for p in by_kind.get("PersistentVolumeClaim", [])}
        configmaps = {c["metadata"]["name"] for c in by_kind.get("ConfigMap", [])}
        for vol in volumes.values():
            if "persistentVolumeClaim" in vol and vol["persistentVolumeClaim"].get("claimName") not in pvcs:
                self.err(where, f"volume {vol['name']}: PersistentVolumeClaim "
                                f"{vol['persistentVolumeClaim'].get('claimName')} is not in the rendering")
            if "configMap" in vol and vol["configMap"].get("name") not in configmaps:
                self.err(where, f"volume {vol['name']}: ConfigMap {vol['configMap'].get('name')} is not in the rendering")
            if "secret" in vol and vol["secret"].get("secretName") not in EXTERNAL_SECRETS:
                self.err(where, f"volume {vol['name']}: Secret {vol['secret'].get('secretName')} is neither "
                                "rendered nor made by deploy/k8s/make-tls-secret.sh")
        for c in pod.get("containers", []):
            cwhere = f"{where}: container {c.get('name')}"
            env = {e["name"]: e for e in c.get("env", [])}
            # $(VAR) references.
            for text in (c.get("command") or []) + (c.get("args") or []):
                for var in VAR.findall(text):
                    if var not in env:
                        self.err(cwhere, f"$({var}) in '{text}' is not defined in env")
            if not re.fullmatch(r"[^:]+/[^:]+:[^:]+", c.get("image", "")):
                self.err(cwhere, f"image {c.get('image')}: the overlay must map the templates' image name gut "
                                 "to a REGISTRY/NAME:TAG (kustomization images:)")
            # Flags.
            binary, script = binary_of(c)
            if binary is None:
                self.err(cwhere, "runs neither gut-agentd nor gut-coordinator")
            else:
                known = self.bins.flags(binary)
                used = set(parse_args(c.get("args") or []))
                if script:
                    used |= set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", script))
                for flag in sorted(used - known):
                    self.err(cwhere, f"{flag} is not a {binary} flag (not in its --help)")
            # Resources: Guaranteed QoS.
            res = c.get("resources", {})
            req, lim = res.get("requests", {}), res.get("limits", {})
            for q in ("cpu", "memory"):
                if q not in lim or q not in req:
                    self.err(cwhere, f"resources: requests.{q} and limits.{q} both expected")
                elif str(req[q]) != str(lim[q]):
                    self.err(cwhere, f"resources: requests.{q} {req[q]} != limits.{q} {lim[q]}")
            omp = env.get("OMP_NUM_THREADS")
            rf = (omp or {}).get("valueFrom", {}).get("resourceFieldRef", {})
            if binary == "gut-agentd" and (rf.get("resource") != "limits.cpu" or
                                           rf.get("containerName", c.get("name")) != c.get("name")):
                self.err(cwhere, "OMP_NUM_THREADS must come from this container's limits.cpu (resourceFieldRef)")
            sc = c.get("securityContext", {})
            if sc.get("readOnlyRootFilesystem") is not True or sc.get("allowPrivilegeEscalation") is not False:
                self.err(cwhere, "securityContext: readOnlyRootFilesystem: true, allowPrivilegeEscalation: false expected")
            # Ports and probes.
            ports = {}
            for p in c.get("ports", []):
                if not isinstance(p.get("containerPort"), int):
                    self.err(cwhere, f"port {p.get('name')}: containerPort must be a number")
                if len(p.get("name", "")) > 15:
                    self.err(cwhere, f"port name {p.get('name')} is longer than 15 characters")
                if p.get("name") in ports:
                    self.err(cwhere, f"port name {p.get('name')} twice")
                ports[p.get("name")] = p.get("containerPort")
            flags = parse_args(c.get("args") or [])
            _, health = port_of(one(flags, "--health-listen"))
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                pr = c.get(probe)
                if pr is None:
                    self.err(cwhere, f"no {probe}")
                    continue
                gport = pr.get("grpc", {}).get("port")
                if not isinstance(gport, int):
                    self.err(cwhere, f"{probe}: grpc.port must be a number (Kubernetes' gRPC probes take no named port), found {gport!r}")
                elif gport != health:
                    self.err(cwhere, f"{probe}: grpc.port {gport} is not the --health-listen port {health}")
            if binary == "gut-agentd" and c.get("readinessProbe", {}).get("grpc", {}).get("service") != "gut.v1.Peer":
                self.err(cwhere, "readinessProbe: the agents' readiness is grpc service gut.v1.Peer")
            for probe in ("startupProbe", "livenessProbe"):
                if c.get(probe, {}).get("grpc", {}).get("service", "") != "":
                    self.err(cwhere, f"{probe}: liveness must not depend on the neighbours: service \"\" expected")
            if health is not None and ports.get("health") != health:
                self.err(cwhere, f"--health-listen port {health} is not the container port 'health' ({ports.get('health')})")
            _, mport = port_of(one(flags, "--metrics"))
            ann = tmpl.get("metadata", {}).get("annotations", {})
            if mport is None or ports.get("metrics") != mport:
                self.err(cwhere, f"--metrics port {mport} is not the container port 'metrics' ({ports.get('metrics')})")
            if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != str(mport):
                self.err(where, f"prometheus.io/scrape: \"true\" and prometheus.io/port: \"{mport}\" annotations expected")
            lhost, _ = port_of(one(flags, "--listen"))
            for flag in ("--listen", "--health-listen", "--metrics"):
                host, _ = port_of(one(flags, flag))
                if host != "$(POD_IP)":
                    self.err(cwhere, f"{flag} should bind $(POD_IP) (probes and peers dial the pod IP), found {host}")
            if env.get("POD_IP", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "status.podIP":
                self.err(cwhere, "POD_IP must come from fieldRef status.podIP")
            # Mounts.
            for m in c.get("volumeMounts", []):
                mounted.add(m["name"])
                vol = volumes.get(m["name"])
                if vol is None and m["name"] not in claims:
                    self.err(cwhere, f"volumeMount {m['name']}: no such volume or volumeClaimTemplate")
                if vol is not None and ("configMap" in vol or "secret" in vol) and "subPath" in m:
                    self.err(cwhere, f"volumeMount {m['name']}: no subPath on ConfigMap/Secret mounts (they never see updates)")
        for v in set(volumes) | claims:
            if v not in mounted:
                self.err(where, f"volume {v} is not mounted by any container")

    def workload_of(self, selector, workloads):
        return [w for w in workloads if subset(selector, w["spec"]["template"].get("metadata", {}).get("labels", {}))]

    def check_service(self, s, workloads, name):
        where = f"{name}: Service/{s['metadata']['name']}"
        spec = s["spec"]
        matched = self.workload_of(spec.get("selector", {}), workloads)
        if len(matched) != 1:
            self.err(where, f"selector {spec.get('selector')} matches {len(matched)} workloads' pods, expected 1")
            return
        c = matched[0]["spec"]["template"]["spec"]["containers"][0]
        cports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
        for p in spec.get("ports", []):
            t = p.get("targetPort", p.get("port"))
            if isinstance(t, str) and t not in cports:
                self.err(where, f"port {p.get('name')}: targetPort '{t}' is no container port name of "
                                f"{matched[0]['kind']}/{matched[0]['metadata']['name']}")
            if isinstance(t, int) and t not in cports.values():
                self.err(where, f"port {p.get('name')}: targetPort {t} is no container port")

    def check_pdb(self, p, workloads, name):
        where = f"{name}: PodDisruptionBudget/{p['metadata']['name']}"
        matched = self.workload_of(p["spec"].get("selector", {}).get("matchLabels", {}), workloads)
        if len(matched) != 1 or matched[0]["kind"] != "StatefulSet":
            self.err(where, "selector must match the agents' StatefulSet pods (and nothing else)")
        if p["spec"].get("maxUnavailable") != 1:
            self.err(where, "maxUnavailable: 1 expected")

    def check_monitor(self, m, services, name):
        where = f"{name}: ServiceMonitor/{m['metadata']['name']}"
        sel = m["spec"].get("selector", {}).get("matchLabels", {})
        matched = [s for s in services if subset(sel, s["metadata"].get("labels", {}))]
        if len(matched) != 1:
            self.err(where, f"selector {sel} matches {len(matched)} Services' labels, expected 1")
            return
        names = {p.get("name") for p in matched[0]["spec"].get("ports", [])}
        # The labels deploy/observability's rules and dashboard join on (docs/operations/monitoring.md).
        agents = matched[0]["spec"].get("clusterIP") == "None"
        want = {"job", "run_id", "rank", "name"} if agents else {"job", "run_id"}
        for e in m["spec"].get("endpoints", []):
            if e.get("port") not in names:
                self.err(where, f"endpoint port '{e.get('port')}' is not a port name of Service/{matched[0]['metadata']['name']}")
            got = {r.get("targetLabel") for r in e.get("relabelings", [])}
            if not want <= got:
                self.err(where, f"endpoint {e.get('port')}: relabelings must set the target labels {sorted(want - got)}")

    # --------------------------------------------------------------------------------------------
    def check_agents(self, sts, services, name):
        where = f"{name}: StatefulSet/{sts['metadata']['name']}"
        spec = sts["spec"]
        svc = next((s for s in services if s["metadata"]["name"] == spec.get("serviceName")), None)
        if svc is None:
            self.err(where, f"serviceName {spec.get('serviceName')} is not a rendered Service")
        else:
            if svc["spec"].get("clusterIP") != "None" or svc["spec"].get("publishNotReadyAddresses") is not True:
                self.err(where, f"Service/{svc['metadata']['name']} must be headless (clusterIP: None) with publishNotReadyAddresses: true")
            if not subset(svc["spec"].get("selector", {}), spec["template"]["metadata"].get("labels", {})):
                self.err(where, f"Service/{svc['metadata']['name']} does not select the StatefulSet's pods")
        if spec.get("podManagementPolicy") != "Parallel":
            self.err(where, "podManagementPolicy: Parallel expected (the join barrier waits for every rank)")
        if spec.get("updateStrategy", {}).get("type") != "OnDelete":
            self.err(where, "updateStrategy.type: OnDelete expected")
        pod = spec["template"]["spec"]
        c = pod["containers"][0]
        flags = parse_args(c.get("args") or [])
        env = {e["name"]: e for e in c.get("env", [])}
        try:
            stop = float(one(flags, "--stop-timeout-s") or 10)
        except ValueError:
            stop = None
            self.err(where, "--stop-timeout-s is not a number")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if stop is not None and not grace > stop:
            self.err(where, f"terminationGracePeriodSeconds {grace} must exceed --stop-timeout-s {stop}")
        if env.get("RANK", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != \
                f"metadata.labels['{POD_INDEX_LABEL}']":
            self.err(where, f"RANK must come from the {POD_INDEX_LABEL} label (downward API)")
        if env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
            self.err(where, "POD_NAME must come from fieldRef metadata.name")
        if one(flags, "--rank") != "$(RANK)":
            self.err(where, "--rank=$(RANK) expected")
        lim = c.get("resources", {}).get("limits", {})
        try:
            if int(one(flags, "--threads") or 1) != quantity_cpu(lim.get("cpu", 0)):
                self.err(where, f"--threads {one(flags, '--threads')} != limits.cpu {lim.get('cpu')}")
        except ValueError:
            self.err(where, "--threads is not a number")
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
        _, lport = port_of(one(flags, "--listen"))
        if lport is None or ports.get("peer") != lport:
            self.err(where, f"--listen port {lport} is not the container port 'peer' ({ports.get('peer')})")
        if svc is not None:
            for flag, port_name in (("--advertise", "peer"), ("--metrics-advertise", "metrics")):
                expect = f"$(POD_NAME).{svc['metadata']['name']}:{ports.get(port_name)}"
                if one(flags, flag) != expect:
                    self.err(where, f"{flag} {one(flags, flag)}, expected {expect} (the pod's name in the headless Service)")
                sp = [p for p in svc["spec"].get("ports", []) if p.get("name") == port_name]
                if not sp or sp[0].get("port") != ports.get(port_name):
                    self.err(where, f"Service/{svc['metadata']['name']} port '{port_name}' should be {ports.get(port_name)} (the agents advertise it)")
        name_flag = one(flags, "--name") or ""
        cert = one(flags, "--tls-cert") or ""
        if not cert.endswith(f"/{name_flag}.pem") or (one(flags, "--tls-key") or "") != cert[:-4] + ".key":
            self.err(where, f"--tls-cert/--tls-key must be the files of --name {name_flag} (its common name)")

    def check_coordinator(self, dep, sts, services, by_kind, name, deep):
        where = f"{name}: Deployment/{dep['metadata']['name']}"
        spec = dep["spec"]
        if spec.get("replicas") != 1 or spec.get("strategy", {}).get("type") != "Recreate":
            self.err(where, "replicas: 1 and strategy Recreate expected (never two coordinators)")
        c = spec["template"]["spec"]["containers"][0]
        flags = parse_args(c.get("args") or [])
        ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
        _, lport = port_of(one(flags, "--listen"))
        if lport is None or ports.get("grpc") != lport:
            self.err(where, f"--listen port {lport} is not the container port 'grpc' ({ports.get('grpc')})")
        # The agents' --coordinator names the coordinator's Service and a port that reaches --listen.
        aflags = parse_args(sts["spec"]["template"]["spec"]["containers"][0].get("args") or [])
        chost, cport = port_of(one(aflags, "--coordinator"))
        svc = next((s for s in services if s["metadata"]["name"] == chost), None)
        if svc is None:
            self.err(where, f"the agents' --coordinator host {chost} is not a rendered Service")
        else:
            if not subset(svc["spec"].get("selector", {}), spec["template"]["metadata"].get("labels", {})):
                self.err(where, f"Service/{chost} does not select the coordinator's pods")
            sp = [p for p in svc["spec"].get("ports", []) if p.get("port") == cport]
            target = sp[0].get("targetPort", cport) if sp else None
            if isinstance(target, str):
                target = ports.get(target)
            if target != lport:
                self.err(where, f"the agents dial {chost}:{cport}, which does not reach --listen port {lport}")
        # The manifest: mounted from the generated ConfigMap, valid, as many agents as replicas.
        manifest = one(flags, "--manifest") or ""
        pod = spec["template"]["spec"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        cm_name = None
        for m in c.get("volumeMounts", []):
            if os.path.dirname(manifest) == m["mountPath"].rstrip("/") and "configMap" in vols.get(m["name"], {}):
                cm_name = vols[m["name"]]["configMap"]["name"]
        cm = next((x for x in by_kind.get("ConfigMap", []) if x["metadata"]["name"] == cm_name), None)
        if cm is None or os.path.basename(manifest) not in cm.get("data", {}):
            self.err(where, f"--manifest {manifest} is not a key of a ConfigMap mounted at its directory")
            return
        binary, script = binary_of(c)
        if deep:
            self.check_manifest(cm["data"][os.path.basename(manifest)], flags, sts, where)
            self.check_wrapper(script, flags, where)
            self.check_tls(sts, dep, services, where)

    def check_manifest(self, text, flags, sts, where):
        path = os.path.join(self.work, "manifest.yaml")
        with open(path, "w") as f:
            f.write(text)
        sets = [f"--set={s}" for s in flags.get("--set", [])]
        data_path = (yaml.safe_load(text).get("data") or {}).get("path", "/usr/share/datasets/fashion-mnist")
        for s in flags.get("--set", []):
            if s.startswith("data.path="):
                data_path = s.split("=", 1)[1]
        if not os.path.isdir(data_path):
            # The coordinator checks that data.path exists on its own file system; the image has it.
            sets.append("--set=data.path=/tmp")
        coord = self.bins.paths["gut-coordinator"]
        r = subprocess.run([coord, "--manifest", path, "--print-config", *sets], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            self.err(where, f"the ConfigMap's manifest fails gut-coordinator --print-config (exit {r.returncode}"
                            f"{', a crash' if r.returncode < 0 else ''}): {r.stderr.strip()}")
            return
        r = subprocess.run([coord, "--manifest", path, "--print-num-agents", *sets], capture_output=True, text=True, timeout=60)
        n = int(r.stdout.strip()) if r.returncode == 0 and r.stdout.strip().isdigit() else None
        if n is None:
            self.err(where, f"gut-coordinator --print-num-agents failed (exit {r.returncode}"
                            f"{', a crash' if r.returncode < 0 else ''}): {r.stderr.strip()}")
        elif n != sts["spec"].get("replicas"):
            self.err(where, f"the manifest runs {n} agents, the StatefulSet has {sts['spec'].get('replicas')} replicas")

    def check_wrapper(self, script, flags, where):
        """The coordinator's sh wrapper: --resume exactly when --out holds a saved run, nothing at
        all once that run has finished (a resumed finished run would be rewritten as failed)."""
        if script is None:
            self.err(where, "expected the sh -c wrapper that adds --resume once the state file exists")
            return
        out = (one(flags, "--out") or "").rstrip("/")
        m = re.search(r"\[ -f (\S+) \]", script)
        if not out or m is None or m.group(1) != out + "/coordinator-state.json":
            self.err(where, f"the wrapper must test --out's coordinator-state.json ({out}/coordinator-state.json)")
            return
        if f"{out}/summary.json" not in script:
            self.err(where, f"the wrapper must not start the coordinator again once {out}/summary.json says finished")
        d = tempfile.mkdtemp(dir=self.work)
        fake_bin = os.path.join(d, "bin")
        os.mkdir(fake_bin)
        with open(os.path.join(fake_bin, "gut-coordinator"), "w") as f:
            f.write('#!/bin/sh\nprintf "%s\\n" "$@" > "$ARGV_FILE"\n')
        os.chmod(os.path.join(fake_bin, "gut-coordinator"), 0o755)
        state = os.path.join(d, "out")
        os.mkdir(state)
        local = script.replace(out + "/", state + "/")
        argv_file = os.path.join(d, "argv")
        env = dict(os.environ, PATH=fake_bin + os.pathsep + os.environ.get("PATH", ""), ARGV_FILE=argv_file)
        seen = []
        for step in ("fresh", "saved", "finished"):
            if step == "saved":
                open(os.path.join(state, "coordinator-state.json"), "w").close()
            if step == "finished":
                with open(os.path.join(state, "summary.json"), "w") as f:
                    f.write('{\n  "status": "finished"\n}\n')
            if os.path.exists(argv_file):
                os.remove(argv_file)
            r = subprocess.run(["/bin/sh", "-c", local, "gut-coordinator", "--manifest=x", "--out=y"], env=env,
                               capture_output=True, text=True, timeout=30)
            seen.append((r.returncode, open(argv_file).read().split() if os.path.exists(argv_file) else None))
        want = [(0, ["--manifest=x", "--out=y"]), (0, ["--resume", "--manifest=x", "--out=y"]), (0, None)]
        if seen != want:
            self.err(where, f"the wrapper gave (exit status, coordinator argv) {seen} for a fresh, a saved and a "
                            f"finished run; expected {want}")

    def secret_for(self, agents):
        if agents not in self.secret_cache:
            d = tempfile.mkdtemp(dir=self.work)
            r = subprocess.run([os.path.join(self.source, "deploy/k8s/make-tls-secret.sh"), "--agents", str(agents),
                                "--certs-dir", d], capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise SystemExit(f"FAIL: make-tls-secret.sh: {r.stderr}")
            self.secret_cache[agents] = (yaml.safe_load(r.stdout), d)
        return self.secret_cache[agents]

    def cert_names(self, pem_file):
        r = subprocess.run(["openssl", "x509", "-in", pem_file, "-noout", "-subject", "-ext", "subjectAltName"],
                           capture_output=True, text=True, timeout=30)
        cn = re.search(r"CN\s*=\s*([^,\s/]+)", r.stdout)
        return (cn.group(1) if cn else None), set(re.findall(r"DNS:([^,\s]+)", r.stdout))

    def check_tls(self, sts, dep, services, where):
        if shutil.which("openssl") is None:
            print(f"note: openssl missing, the TLS Secret is not checked ({where})")
            return
        n = sts["spec"].get("replicas", 1)
        secret, certs = self.secret_for(n)
        if secret.get("kind") != "Secret" or secret["metadata"]["name"] not in EXTERNAL_SECRETS:
            self.err(where, "make-tls-secret.sh does not write the Secret the pods mount")
            return
        keys = set(secret.get("data", {}))
        for wl, ranks in ((sts, range(n)), (dep, [None])):
            pod = wl["spec"]["template"]["spec"]
            c = pod["containers"][0]
            mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            flags = parse_args(c.get("args") or [])
            for r in ranks:
                def sub(s):
                    if r is None:
                        return s
                    return s.replace("$(RANK)", str(r)).replace("$(POD_NAME)", f"{sts['metadata']['name']}-{r}")
                for flag in ("--tls-ca", "--tls-cert", "--tls-key"):
                    path = sub(one(flags, flag) or "")
                    vol = vols.get(mounts.get(os.path.dirname(path), ""), {})
                    if "secret" not in vol:
                        self.err(where, f"{wl['kind']} {flag} {path}: its directory is no Secret mount")
                    elif os.path.basename(path) not in keys:
                        self.err(where, f"{wl['kind']} {flag} {path}: the Secret has no key {os.path.basename(path)}")
                cert = os.path.join(certs, os.path.basename(sub(one(flags, "--tls-cert") or "")))
                if not os.path.exists(cert):
                    continue
                cn, sans = self.cert_names(cert)
                if wl is sts:
                    if cn != sub(one(flags, "--name") or ""):
                        self.err(where, f"rank {r}: the certificate's common name {cn} is not --name {sub(one(flags, '--name'))}")
                    host, _ = port_of(sub(one(flags, "--advertise") or ""))
                    if host not in sans:
                        self.err(where, f"rank {r}: --advertise host {host} is not a SAN of {os.path.basename(cert)}")
                else:
                    aflags = parse_args(sts["spec"]["template"]["spec"]["containers"][0].get("args") or [])
                    host, _ = port_of(one(aflags, "--coordinator"))
                    if host not in sans:
                        self.err(where, f"the agents' --coordinator host {host} is not a SAN of {os.path.basename(cert)}")


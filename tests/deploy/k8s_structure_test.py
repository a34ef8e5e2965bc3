#!/usr/bin/python3
"""Structural test of deploy/k8s: renders every overlay with `kubectl kustomize` (no cluster
needed) and checks what an API server would not, or only at apply time, or only once pods run:

  keys: an allowlist at every path the manifests write (a misspelt key such as
        podManagmentPolicy is silently dropped by an API server);
  wiring: selectors against pod template labels (StatefulSet, Deployment, Services, the
        PodDisruptionBudget, ServiceMonitors), the StatefulSet's serviceName is a headless Service
        publishing not-ready addresses, named ports exist, probe ports are numbers equal to the
        --health-listen port, the flags' ports agree with the container ports, Services and the
        agents' --coordinator address;
  binaries: every --flag exists in the built binary's --help, every $(VAR) is defined in env,
        the coordinator's wrapper adds --resume exactly when its state file exists;
  resources: requests == limits, OMP_NUM_THREADS from limits.cpu, --threads == limits.cpu,
        terminationGracePeriodSeconds > --stop-timeout-s, non-root, read-only root file system;
  volumes: every mount has its volume, no subPath on ConfigMap/Secret mounts, every volume and
        PVC used exists;
  contents: the generated ConfigMap's manifest passes gut-coordinator --print-config, its agent
        count equals the StatefulSet's replicas, the manifest copies equal deploy/examples, and the
        Secret of deploy/k8s/make-tls-secret.sh holds every file the pods name, with each
        certificate's common name = the agent's --name and the dialled host names as SANs.

Then it mutates rendered objects (a misspelt key, a named probe port, a subPath, an unknown
flag, ...) and checks that each mutation is caught.

Modules: k8s_structure_lib.py (key allowlist, arg and address parsers, the binaries' flags,
rendering), k8s_structure_checks.py (the Checker); this file holds the planted mistakes and main.

Usage: k8s_structure_test.py --source-dir DIR --agentd BIN --coordinator BIN [--kubectl kubectl]
Exit 0 pass, 1 fail, 77 skipped (kubectl or python3-yaml missing).
"""
import argparse
import copy
import os
import shutil
import sys
import tempfile

SKIP = 77
try:
    import yaml
except ImportError:
    print("skipped: python3-yaml is not installed (apt-get install python3-yaml)")
    sys.exit(SKIP)

# The schema, helpers and checks live next to this file (run as a script, its directory is on
# sys.path); no bytecode is written into the source tree.
sys.dont_write_bytecode = True
from k8s_structure_checks import Checker  # noqa: E402
from k8s_structure_lib import MANIFEST_COPIES, Binaries, render  # noqa: E402


def find(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


def agent_container(docs):
    return find(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]


def set_arg(container, flag, value):
    container["args"] = [a for a in container["args"] if not a.startswith(flag + "=")] + [f"{flag}={value}"]


# Each mutation must make the checks fail with a message containing the expected text.
def mutations():
    def typo(d):
        s = find(d, "StatefulSet")["spec"]
        s["podManagmentPolicy"] = s.pop("podManagementPolicy")

    def container_typo(d):
        agent_container(d)["readinesProbe"] = agent_container(d).pop("readinessProbe")

    def named_probe(d):
        agent_container(d)["livenessProbe"]["grpc"]["port"] = "health"

    def probe_port(d):
        agent_container(d)["readinessProbe"]["grpc"]["port"] = 7072

    def sub_path(d):
        for m in agent_container(d)["volumeMounts"]:
            if m["name"] == "tls":
                m["subPath"] = "ca.pem"

    def unknown_flag(d):
        agent_container(d)["args"].append("--health-port=7071")

    def undefined_var(d):
        set_arg(agent_container(d), "--name", "agent-$(ORDINAL)")

    def requests(d):
        agent_container(d)["resources"]["requests"]["cpu"] = "500m"

    def grace(d):
        find(d, "StatefulSet")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 5

    def not_headless(d):
        svc = next(x for x in d if x["kind"] == "Service" and x["spec"].get("clusterIP") == "None")
        del svc["spec"]["publishNotReadyAddresses"]

    def selector(d):
        find(d, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] = "gut-agent"

    def missing_volume(d):
        agent_container(d)["volumeMounts"].append({"name": "cache", "mountPath": "/cache"})

    def omp(d):
        agent_container(d)["env"] = [e for e in agent_container(d)["env"] if e["name"] != "OMP_NUM_THREADS"]

    def service_port(d):
        svc = next(x for x in d if x["kind"] == "Service" and x["spec"].get("clusterIP") == "None")
        svc["spec"]["ports"][0]["targetPort"] = "peers"

    return [
        (typo, "podManagmentPolicy: unknown key"),
        (container_typo, "readinesProbe: unknown key"),
        (named_probe, "grpc.port must be a number"),
        (probe_port, "is not the --health-listen port"),
        (sub_path, "no subPath"),
        (unknown_flag, "--health-port is not a gut-agentd flag"),
        (undefined_var, "$(ORDINAL)"),
        (requests, "requests.cpu 500m != limits.cpu"),
        (grace, "must exceed --stop-timeout-s"),
        (not_headless, "publishNotReadyAddresses"),
        (selector, "selector must match"),
        (missing_volume, "no such volume"),
        (omp, "OMP_NUM_THREADS"),
        (service_port, "targetPort 'peers'"),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--agentd", required=True)
    ap.add_argument("--coordinator", required=True)
    ap.add_argument("--kubectl", default="kubectl")
    a = ap.parse_args()
    kubectl = shutil.which(a.kubectl)
    if kubectl is None:
        print(f"skipped: {a.kubectl} not found (kubectl's built-in kustomize renders the manifests)")
        return SKIP
    for b in (a.agentd, a.coordinator):
        if not os.access(b, os.X_OK):
            print(f"FAIL: {b} is not an executable (build it first)")
            return 1
    source = os.path.abspath(a.source_dir)
    k8s = os.path.join(source, "deploy/k8s")
    work = tempfile.mkdtemp(prefix="k8s-structure-")
    try:
        bins = Binaries(a.agentd, a.coordinator)
        checker = Checker(source, bins, work)
        for copy_path, example in MANIFEST_COPIES.items():
            with open(os.path.join(source, copy_path), "rb") as f1, open(os.path.join(source, example), "rb") as f2:
                if f1.read() != f2.read():
                    checker.err(copy_path, f"differs from {example} (it is a copy: cp {example} {copy_path})")
        overlays = sorted(os.path.join(k8s, "overlays", o) for o in os.listdir(os.path.join(k8s, "overlays")))
        renderings = {}
        for o in overlays:
            renderings[os.path.relpath(o, source)] = render(kubectl, o)
        # Every overlay again with the monitoring component.
        for o in overlays:
            d = tempfile.mkdtemp(dir=work)
            with open(os.path.join(d, "kustomization.yaml"), "w") as f:
                yaml.safe_dump({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                "resources": [os.path.relpath(o, d)],
                                "components": [os.path.relpath(os.path.join(k8s, "components/monitoring"), d)]}, f)
            docs = render(kubectl, d)
            if sum(1 for x in docs if x["kind"] == "ServiceMonitor") != 2:
                checker.err(f"{os.path.relpath(o, source)}+monitoring", "expected 2 ServiceMonitors")
            renderings[os.path.relpath(o, source) + "+monitoring"] = docs
        for name, docs in renderings.items():
            checker.check(docs, name, deep="+monitoring" not in name)
            n = {k: sum(1 for x in docs if x["kind"] == k) for k in ("StatefulSet", "Deployment", "Service", "ServiceMonitor")}
            print(f"{name}: {len(docs)} objects {n}")
        # The checks must catch what they claim to (on the first overlay's rendering).
        base_name, base_docs = next(iter(renderings.items()))
        for mutate, expected in mutations():
            docs = copy.deepcopy(base_docs)
            mutate(docs)
            probe = Checker(source, bins, work)
            probe.check(docs, "mutant", deep=False)
            if not any(expected in e for e in probe.errors):
                checker.err("self-test", f"mutation {mutate.__name__} was not caught (expected '{expected}'; "
                                         f"got {probe.errors or 'no errors'})")
        print(f"self-test: {len(mutations())} mutations")
        if checker.errors:
            for e in checker.errors:
                print("FAIL:", e)
            return 1
        print("PASS")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

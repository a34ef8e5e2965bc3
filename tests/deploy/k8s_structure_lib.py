"""Shared parts of the deploy/k8s structure test (tests/deploy/k8s_structure_test.py): the key
allowlist of every object kind the overlays render, the constants the checks compare against,
small parsers for container args and addresses, the gut binaries' --help flags, and rendering an
overlay with `kubectl kustomize`. The caller has already checked that python3-yaml is installed.
"""
import os
import re
import subprocess

import yaml

# ------------------------------------------------------------------------------------------------
# Key allowlist: a dict maps each allowed key to the schema of its value (None: not checked
# further; ANY: a map with free keys, e.g. labels), a one-element list is a list of that schema.
ANY = {"*": None}
META = {"name": None, "namespace": None, "labels": ANY, "annotations": ANY}
SELECTOR = {"matchLabels": ANY, "matchExpressions": None}
PROBE = {
    "grpc": {"port": None, "service": None},
    "initialDelaySeconds": None, "periodSeconds": None, "timeoutSeconds": None,
    "failureThreshold": None, "successThreshold": None, "terminationGracePeriodSeconds": None,
}
ENV = [{
    "name": None, "value": None,
    "valueFrom": {
        "fieldRef": {"fieldPath": None, "apiVersion": None},
        "resourceFieldRef": {"containerName": None, "resource": None, "divisor": None},
        "secretKeyRef": {"name": None, "key": None, "optional": None},
        "configMapKeyRef": {"name": None, "key": None, "optional": None},
    },
}]
QUANTITIES = {"cpu": None, "memory": None, "ephemeral-storage": None}
CONTAINER = {
    "name": None, "image": None, "imagePullPolicy": None, "command": None, "args": None,
    "workingDir": None, "env": ENV,
    "ports": [{"name": None, "containerPort": None, "protocol": None}],
    "startupProbe": PROBE, "livenessProbe": PROBE, "readinessProbe": PROBE,
    "resources": {"requests": QUANTITIES, "limits": QUANTITIES},
    "securityContext": {
        "allowPrivilegeEscalation": None, "readOnlyRootFilesystem": None, "privileged": None,
        "capabilities": {"drop": None, "add": None}, "runAsNonRoot": None, "runAsUser": None,
        "runAsGroup": None, "seccompProfile": {"type": None, "localhostProfile": None},
    },
    "volumeMounts": [{"name": None, "mountPath": None, "readOnly": None, "subPath": None}],
}
VOLUMES = [{
    "name": None,
    "secret": {"secretName": None, "defaultMode": None, "items": None, "optional": None},
    "configMap": {"name": None, "defaultMode": None, "items": None, "optional": None},
    "emptyDir": {"sizeLimit": None, "medium": None},
    "persistentVolumeClaim": {"claimName": None, "readOnly": None},
}]
POD_SPEC = {
    "terminationGracePeriodSeconds": None, "enableServiceLinks": None,
    "automountServiceAccountToken": None, "serviceAccountName": None, "priorityClassName": None,
    "restartPolicy": None, "nodeSelector": ANY, "tolerations": None, "affinity": None,
    "topologySpreadConstraints": None,
    "securityContext": {
        "runAsNonRoot": None, "runAsUser": None, "runAsGroup": None, "fsGroup": None,
        "fsGroupChangePolicy": None, "seccompProfile": {"type": None, "localhostProfile": None},
    },
    "containers": [CONTAINER], "initContainers": [CONTAINER], "volumes": VOLUMES,
}
TEMPLATE = {"metadata": META, "spec": POD_SPEC}
PVC_SPEC = {"accessModes": None, "resources": {"requests": {"storage": None}},
            "storageClassName": None, "volumeMode": None}
SPECS = {
    "StatefulSet": {
        "serviceName": None, "replicas": None, "podManagementPolicy": None,
        "updateStrategy": {"type": None, "rollingUpdate": None}, "selector": SELECTOR,
        "template": TEMPLATE, "volumeClaimTemplates": [{"metadata": META, "spec": PVC_SPEC}],
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": None, "whenScaled": None},
        "minReadySeconds": None, "revisionHistoryLimit": None,
    },
    "Deployment": {
        "replicas": None, "strategy": {"type": None, "rollingUpdate": None}, "selector": SELECTOR,
        "template": TEMPLATE, "revisionHistoryLimit": None, "minReadySeconds": None,
        "progressDeadlineSeconds": None,
    },
    "Service": {
        "clusterIP": None, "publishNotReadyAddresses": None, "selector": ANY, "type": None,
        "ports": [{"name": None, "port": None, "targetPort": None, "protocol": None,
                   "appProtocol": None}],
    },
    "PodDisruptionBudget": {"maxUnavailable": None, "minAvailable": None, "selector": SELECTOR,
                            "unhealthyPodEvictionPolicy": None},
    "PersistentVolumeClaim": PVC_SPEC,
    "ServiceMonitor": {
        "selector": SELECTOR, "podTargetLabels": None, "targetLabels": None, "jobLabel": None,
        "namespaceSelector": None,
        "endpoints": [{"port": None, "path": None, "interval": None, "scrapeTimeout": None,
                       "scheme": None, "honorLabels": None,
                       "relabelings": [{"sourceLabels": None, "targetLabel": None, "replacement": None,
                                        "regex": None, "action": None, "separator": None}],
                       "metricRelabelings": None}],
    },
}
API_VERSIONS = {
    "StatefulSet": "apps/v1", "Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1",
    "PodDisruptionBudget": "policy/v1", "PersistentVolumeClaim": "v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
}
# The manifest copies the overlays ship, and the example each must equal.
MANIFEST_COPIES = {
    "deploy/k8s/base/run.yaml": "deploy/examples/fmnist-ring16-qggutm-quick.yaml",
    "deploy/k8s/overlays/fmnist-ring16/run.yaml": "deploy/examples/fmnist-ring16-qggutm.yaml",
}
# Created outside the kustomization (by deploy/k8s/make-tls-secret.sh).
EXTERNAL_SECRETS = {"gut-tls"}
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
VAR = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def object_keys(obj, schema, path, errors):
    """Every key of obj at the paths of schema must be allowed there."""
    if schema is None or obj is None:
        return
    if isinstance(schema, list):
        if not isinstance(obj, list):
            errors.append(f"{path}: expected a list, found {type(obj).__name__}")
            return
        for i, item in enumerate(obj):
            object_keys(item, schema[0], f"{path}[{i}]", errors)
        return
    if not isinstance(obj, dict):
        errors.append(f"{path}: expected a map, found {type(obj).__name__}")
        return
    if "*" in schema:
        return
    for key, value in obj.items():
        if key not in schema:
            errors.append(f"{path}.{key}: unknown key (allowed here: {', '.join(sorted(schema))})")
        else:
            object_keys(value, schema[key], f"{path}.{key}", errors)


def subset(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def port_of(address):
    """The port of HOST:PORT (with $(VARS) in the host)."""
    m = re.fullmatch(r"(.+):(\d+)", address or "")
    return (m.group(1), int(m.group(2))) if m else (None, None)


def parse_args(args):
    """--flag=value / --flag value / --flag -> {flag: [values]} (repeatable flags keep all)."""
    out = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a.startswith("--"):
            if "=" in a:
                k, v = a.split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                k, v = a, args[i + 1]
                i += 1
            else:
                k, v = a, None
            out.setdefault(k, []).append(v)
        i += 1
    return out


def one(flags, name):
    v = flags.get(name)
    return v[-1] if v else None


def quantity_cpu(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


class Binaries:
    def __init__(self, agentd, coordinator):
        self.paths = {"gut-agentd": agentd, "gut-coordinator": coordinator}
        self.help = {}

    def flags(self, name):
        if name not in self.help:
            r = subprocess.run([self.paths[name], "--help"], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise SystemExit(f"FAIL: {self.paths[name]} --help exited {r.returncode}: {r.stderr}")
            self.help[name] = set(re.findall(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)", r.stdout))
        return self.help[name]


def binary_of(container):
    """Which gut binary a container runs: its command, or the one a sh -c wrapper execs."""
    command = container.get("command") or []
    if command and os.path.basename(command[0]) in ("gut-agentd", "gut-coordinator"):
        return os.path.basename(command[0]), None
    if len(command) >= 3 and command[1] == "-c":
        m = re.search(r"exec (gut-agentd|gut-coordinator)\b", command[2])
        if m:
            return m.group(1), command[2]
    return None, None


def render(kubectl, directory):
    r = subprocess.run([kubectl, "kustomize", directory], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"FAIL: kubectl kustomize {directory}: {r.stderr.strip()}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


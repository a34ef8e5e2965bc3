#!/usr/bin/python3
"""Turns a rendered deploy/k8s overlay into plain Pod specs that `podman kube play` runs on one
machine, doing by hand what the cluster would do (tests/deploy/k8s_podman_e2e.sh):

  StatefulSet controller: one Pod per ordinal r (name gut-agent-r, the pod-index label r);
  downward API:          POD_IP, POD_NAME, RANK and OMP_NUM_THREADS (ceil of limits.cpu) as values,
                         and $(VAR) in command and args expanded as the kubelet does;
  pod network:           hostNetwork, pod IPs 127.0.0.9 (coordinator) and 127.0.0.(10+r) (agents),
                         all loopback, so every pod binds the same ports on its own address;
  cluster DNS:           an /etc/hosts with the Services' names (gut-coordinator,
                         gut-agent-r.gut-agents) and those addresses;
  volumes:               the ConfigMap and the Secret written out as files, PVCs and emptyDirs as
                         host directories owned by the pods' user.

The probes are dropped (podman does not run gRPC probes; the test calls the health ports itself), and
so are the container ports (podman refuses port mappings with hostNetwork).

Usage: k8s_pods.py --rendered FILE --secret FILE --work DIR
Writes DIR/pods.yaml and DIR/info.json (addresses, health ports, directories, --set flags).
"""
import argparse
import base64
import copy
import json
import math
import os
import re

import yaml

COORDINATOR_IP = "127.0.0.9"


def agent_ip(rank):
    return f"127.0.0.{10 + rank}"


def chown_tree(path, uid, gid):
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.chown(os.path.join(root, n), uid, gid)


def cpu_count(q):
    q = str(q)
    return math.ceil(float(q[:-1]) / 1000 if q.endswith("m") else float(q))


def flag(args, name):
    for a in args:
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rendered", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    docs = [d for d in yaml.safe_load_all(open(a.rendered)) if d]
    secret = yaml.safe_load(open(a.secret))
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    dep = next(d for d in docs if d["kind"] == "Deployment")
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    headless = sts["spec"]["serviceName"]
    coordinator_service = next(d for d in docs if d["kind"] == "Service"
                               and d["metadata"]["name"] != headless)["metadata"]["name"]
    work = os.path.abspath(a.work)
    n = sts["spec"]["replicas"]

    hosts = ["127.0.0.1\tlocalhost", f"{COORDINATOR_IP}\t{coordinator_service}"]
    hosts += [f"{agent_ip(r)}\t{sts['metadata']['name']}-{r}.{headless}" for r in range(n)]
    hosts_file = os.path.join(work, "hosts")
    with open(hosts_file, "w") as f:
        f.write("\n".join(hosts) + "\n")
    os.chmod(hosts_file, 0o644)

    def pod_from(template, name, extra_labels, env_values, claims, uid, gid):
        pod_dir = os.path.join(work, name)
        os.makedirs(pod_dir, exist_ok=True)
        spec = copy.deepcopy(template["spec"])
        spec["hostNetwork"] = True
        spec["restartPolicy"] = "Never"
        volumes = []
        for v in spec.get("volumes", []) + [{"name": c, "persistentVolumeClaim": {}} for c in claims]:
            d = os.path.join(pod_dir, v["name"])
            os.makedirs(d, exist_ok=True)
            if "configMap" in v:
                for key, text in configmaps[v["configMap"]["name"]]["data"].items():
                    with open(os.path.join(d, key), "w") as f:
                        f.write(text)
            elif "secret" in v:
                for key, b64 in secret["data"].items():
                    p = os.path.join(d, key)
                    with open(p, "wb") as f:
                        f.write(base64.b64decode(b64))
                    os.chmod(p, v["secret"].get("defaultMode", 0o644))
            chown_tree(d, uid, gid)
            volumes.append({"name": v["name"], "hostPath": {"path": d, "type": "Directory"}})
        volumes.append({"name": "cluster-dns", "hostPath": {"path": hosts_file, "type": "File"}})
        spec["volumes"] = volumes
        spec.pop("hostAliases", None)
        for c in spec["containers"]:
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                c.pop(probe, None)
            c.pop("ports", None)  # podman maps ports only on a bridge network; with hostNetwork they are informative
            env = []
            for e in c.get("env", []):
                if "valueFrom" in e:
                    vf = e["valueFrom"]
                    if "fieldRef" in vf:
                        value = env_values[vf["fieldRef"]["fieldPath"]]
                    elif "resourceFieldRef" in vf:
                        res = vf["resourceFieldRef"]["resource"]
                        value = str(cpu_count(c["resources"][res.split(".")[0]][res.split(".")[1]]))
                    else:
                        raise SystemExit(f"k8s_pods: cannot emulate env {e['name']}: {vf}")
                    e = {"name": e["name"], "value": value}
                env.append(e)
            c["env"] = env
            # The kubelet expands $(VAR) in command and args ($$ escapes a $); podman does not.
            values = {e["name"]: e.get("value", "") for e in env}

            def expand(text):
                return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                              lambda m: "$" if m.group(0) == "$$" else values.get(m.group(1), m.group(0)), text)
            for key in ("command", "args"):
                if key in c:
                    c[key] = [expand(x) for x in c[key]]
            c.setdefault("volumeMounts", []).append({"name": "cluster-dns", "mountPath": "/etc/hosts", "readOnly": True})
        labels = dict(template.get("metadata", {}).get("labels", {}), **extra_labels)
        meta = {"name": name, "labels": labels}
        if template.get("metadata", {}).get("annotations"):
            meta["annotations"] = template["metadata"]["annotations"]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}, pod_dir

    def user_of(template):
        sc = template["spec"].get("securityContext", {})
        return sc.get("runAsUser", 0), sc.get("runAsGroup", sc.get("runAsUser", 0))

    pods = []
    info = {"agents": [], "hosts": hosts}
    # The coordinator.
    tmpl = dep["spec"]["template"]
    uid, gid = user_of(tmpl)
    cname = dep["metadata"]["name"]
    pod, pod_dir = pod_from(tmpl, cname, {}, {"status.podIP": COORDINATOR_IP, "metadata.name": cname},
                            [], uid, gid)
    pods.append(pod)
    c = pod["spec"]["containers"][0]
    args = c.get("args", [])
    out = flag(args, "--out")
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    manifest = flag(args, "--manifest")
    info["coordinator"] = {
        "container": f"{cname}-{c['name']}",
        "health": f"{COORDINATOR_IP}:{flag(args, '--health-listen').rsplit(':', 1)[1]}",
        "metrics": f"{COORDINATOR_IP}:{flag(args, '--metrics').rsplit(':', 1)[1]}",
        "out_dir": os.path.join(pod_dir, mounts[out]),
        "manifest": os.path.join(pod_dir, mounts[os.path.dirname(manifest)], os.path.basename(manifest)),
        "sets": [x.split("=", 1)[1] for x in args if x.startswith("--set=")],
        "image": c["image"],
    }
    # The agents.
    tmpl = sts["spec"]["template"]
    uid, gid = user_of(tmpl)
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    for r in range(n):
        name = f"{sts['metadata']['name']}-{r}"
        pod, pod_dir = pod_from(tmpl, name, {"apps.kubernetes.io/pod-index": str(r)},
                                {"status.podIP": agent_ip(r), "metadata.name": name,
                                 "metadata.labels['apps.kubernetes.io/pod-index']": str(r)}, claims, uid, gid)
        pods.append(pod)
        c = pod["spec"]["containers"][0]
        args = c.get("args", [])
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        ckpt = flag(args, "--checkpoint-dir")
        info["agents"].append({
            "rank": r,
            "container": f"{name}-{c['name']}",
            "health": f"{agent_ip(r)}:{flag(args, '--health-listen').rsplit(':', 1)[1]}",
            "metrics": f"{agent_ip(r)}:{flag(args, '--metrics').rsplit(':', 1)[1]}",
            "checkpoint_dir": os.path.join(pod_dir, mounts[ckpt]),
            "readiness_service": tmpl["spec"]["containers"][0]["readinessProbe"]["grpc"]["service"],
        })
    with open(os.path.join(work, "pods.yaml"), "w") as f:
        yaml.safe_dump_all(pods, f, sort_keys=False)
    with open(os.path.join(work, "info.json"), "w") as f:
        json.dump(info, f, indent=2)


if __name__ == "__main__":
    main()

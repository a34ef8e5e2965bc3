#!/usr/bin/env bash
# The run's mutual-TLS material as one Kubernetes Secret (gut-tls), written to stdout:
#   deploy/k8s/make-tls-secret.sh [--agents N] [--namespace NS] [--cluster-domain DOMAIN]
#       [--secret-name NAME] [--certs-dir DIR] > gut-tls.yaml
#   kubectl apply -n NS -f gut-tls.yaml
# Runs deploy/local/make-certs.sh for gut-coordinator and agent-0 .. agent-(N-1) (default N: 16):
# one throwaway CA, one certificate per name (common name = the agent's name = its identity),
# with the DNS names the pods are dialled by as subject alternative names:
#   agent-R:          gut-agent-R.gut-agents, gut-agent-R.gut-agents.NS(.svc(.DOMAIN))
#   gut-coordinator:  gut-coordinator, gut-coordinator.NS(.svc(.DOMAIN))
# The Secret holds ca.pem and NAME.pem/NAME.key for every name; each agent pod picks its own files
# by its rank. The CA's key stays in --certs-dir (default: a temporary directory, deleted at the
# end); keep a --certs-dir to add agents later with the same CA. Never commit the output.
set -euo pipefail
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
agents=16 namespace=default domain=cluster.local secret=gut-tls certs="" ns_given=0
sts=gut-agent headless=gut-agents coordinator=gut-coordinator
while [[ $# -gt 0 ]]; do
  case "$1" in
    --agents) agents="$2"; shift 2 ;;
    --namespace) namespace="$2"; ns_given=1; shift 2 ;;
    --cluster-domain) domain="$2"; shift 2 ;;
    --secret-name) secret="$2"; shift 2 ;;
    --certs-dir) certs="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "make-tls-secret: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ "$agents" =~ ^[1-9][0-9]*$ ]] || { echo "make-tls-secret: --agents needs a positive number" >&2; exit 2; }
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
make_certs="$here/../local/make-certs.sh"
[[ -x "$make_certs" ]] || { echo "make-tls-secret: $make_certs not found" >&2; exit 2; }
if [[ -z "$certs" ]]; then
  certs="$(mktemp -d)"
  trap 'rm -rf "$certs"' EXIT
fi
mkdir -p "$certs"

# Every form of a Service name a pod may dial in its namespace.
names_of() {
  local host="$1"
  printf 'DNS:%s,DNS:%s.%s,DNS:%s.%s.svc,DNS:%s.%s.svc.%s' "$host" "$host" "$namespace" "$host" "$namespace" \
    "$host" "$namespace" "$domain"
}
GUT_CERT_SANS="$(names_of "$coordinator")" "$make_certs" "$certs" gut-coordinator >/dev/null
for ((r = 0; r < agents; r++)); do
  GUT_CERT_SANS="$(names_of "$sts-$r.$headless")" "$make_certs" "$certs" "agent-$r" >/dev/null
done

b64() { base64 -w0 <"$1"; }
echo "# mutual-TLS material of a gut run: made by deploy/k8s/make-tls-secret.sh; private keys, do not commit"
echo "apiVersion: v1"
echo "kind: Secret"
echo "metadata:"
echo "  name: $secret"
[[ $ns_given -eq 1 ]] && echo "  namespace: $namespace"
echo "  labels:"
echo "    app.kubernetes.io/part-of: gut"
echo "type: Opaque"
echo "data:"
echo "  ca.pem: $(b64 "$certs/ca.pem")"
for name in gut-coordinator $(seq -f 'agent-%g' 0 $((agents - 1))); do
  echo "  $name.pem: $(b64 "$certs/$name.pem")"
  echo "  $name.key: $(b64 "$certs/$name.key")"
done

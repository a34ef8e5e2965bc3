#!/usr/bin/env bash
# A throwaway certificate authority and one certificate per name, for a run's mutual TLS:
#   deploy/local/make-certs.sh DIR NAME [NAME ...]
# writes DIR/ca.pem (and ca.key) and DIR/NAME.pem + DIR/NAME.key for each NAME: ECDSA P-256,
# common name NAME (gut uses it as the agent's identity), valid for 30 days, usable as server and
# client, with subject alternative names localhost, 127.0.0.1 and NAME (extra SANs: set
# GUT_CERT_SANS="DNS:host.example,IP:10.0.0.5"). Each certificate carries its role in the run as a
# URI SAN: a NAME containing "coordinator" gets spiffe://gut/coordinator, agent-K (K a number)
# spiffe://gut/agent/rank/K (only it can take rank K), any other NAME spiffe://gut/agent.
# Keys are readable by their owner only. Nothing here is meant to outlive the run: production
# deployments bring their own CA (docs/operations/edge.md).
set -euo pipefail
[[ $# -ge 2 ]] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
command -v openssl >/dev/null || { echo "make-certs: openssl not found (apt-get install openssl)" >&2; exit 2; }
dir="$1"; shift
mkdir -p "$dir"
umask 077
if [[ ! -f "$dir/ca.pem" ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 30 \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj "/CN=gut-run-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
ext="$(mktemp)"
trap 'rm -f "$ext"' EXIT
for name in "$@"; do
  [[ -f "$dir/$name.pem" ]] && continue
  if [[ "$name" == *coordinator* ]]; then role=spiffe://gut/coordinator
  elif [[ "$name" =~ ^agent-(0|[1-9][0-9]{0,8})$ ]]; then role="spiffe://gut/agent/rank/${BASH_REMATCH[1]}"
  else role=spiffe://gut/agent; fi
  sans="DNS:localhost,IP:127.0.0.1,DNS:$name,URI:$role${GUT_CERT_SANS:+,$GUT_CERT_SANS}"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' \
    "$sans" >"$ext"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/$name.key" \
    -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial -days 30 \
    -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr"
done
chmod 644 "$dir"/*.pem

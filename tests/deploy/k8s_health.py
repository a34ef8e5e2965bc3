#!/usr/bin/python3
"""What a kubelet's gRPC probe does: one grpc.health.v1.Health/Check call in plaintext, here with
hand-encoded messages (python3-grpcio has no health stubs in Debian 12).

Usage: k8s_health.py HOST:PORT SERVICE [--wait SECONDS]
Prints the status; exit 0 once SERVING (retrying for up to --wait seconds), 1 otherwise, 77 when
python3-grpcio is not installed.
"""
import argparse
import sys
import time

try:
    import grpc
except ImportError:
    print("skipped: python3-grpcio is not installed")
    sys.exit(77)

STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def check(address, service, timeout=2.0):
    """The status name, or the gRPC error code's name."""
    name = service.encode()
    request = (b"\x0a" + bytes([len(name)]) + name) if name else b""  # HealthCheckRequest{service}
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/grpc.health.v1.Health/Check",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            reply = call(request, timeout=timeout)
        except grpc.RpcError as e:
            return e.code().name
    # HealthCheckResponse{status}: field 1, varint; absent = 0 (UNKNOWN).
    return STATUS.get(reply[1], str(reply[1])) if len(reply) >= 2 and reply[0] == 0x08 else "UNKNOWN"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("address")
    ap.add_argument("service")
    ap.add_argument("--wait", type=float, default=0)
    a = ap.parse_args()
    deadline = time.monotonic() + a.wait
    while True:
        status = check(a.address, a.service)
        if status == "SERVING" or time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    print(f"{a.address} '{a.service}': {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())

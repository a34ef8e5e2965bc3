#!/usr/bin/python3
"""An independent gRPC client (Debian's python3-grpcio, not our C++ stack) attacking a running gut
cluster the way a stranger on the network would. Driven by tests/integration/adversary_test.cc,
which starts the cluster, hands this script the addresses and certificates as JSON on argv[1],
and checks the refusal counters on the agents' and the coordinator's /metrics afterwards.

Prints one JSON object: for every attack the gRPC status code and message the attacker got (the
test checks none of them carries the run id), and for the idle streams how long each was held.
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import grpc


def stubs(proto_dir):
    out = tempfile.mkdtemp(prefix="gut-py-")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir, "--python_out", out,
                    "--grpc_python_out", out] + [os.path.join(proto_dir, "gut/v1", f)
                                                  for f in ("common.proto", "peer.proto", "coordinator.proto")],
                   check=True)
    sys.path.insert(0, out)
    from gut.v1 import coordinator_pb2, coordinator_pb2_grpc, peer_pb2, peer_pb2_grpc  # noqa: E402
    return coordinator_pb2, coordinator_pb2_grpc, peer_pb2, peer_pb2_grpc


def read(path):
    with open(path, "rb") as f:
        return f.read()


def credentials(cfg, name):
    """mTLS credentials with `name`'s certificate (None: present no certificate at all)."""
    ca = read(os.path.join(cfg["tls_dir"], "ca.pem"))
    if name is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(root_certificates=ca,
                                        private_key=read(os.path.join(cfg["tls_dir"], name + ".key")),
                                        certificate_chain=read(os.path.join(cfg["tls_dir"], name + ".pem")))


def outcome(fn):
    try:
        fn()
        return {"code": "OK", "message": ""}
    except grpc.RpcError as e:
        return {"code": e.code().name, "message": e.details() or ""}


def join_window(cfg, coordinator_pb2, coordinator_pb2_grpc):
    """Before any agent has joined: certificates of the run's own CA try to take ranks that are not
    theirs (the coordinator runs with --require-rank-binding)."""
    result = {}

    def join(cert, rank, name):
        with grpc.secure_channel(cfg["coordinator"], credentials(cfg, cert)) as ch:
            c = coordinator_pb2_grpc.CoordinatorStub(ch)
            return outcome(lambda: c.Join(coordinator_pb2.JoinRequest(
                agent_name=name, advertised_address="10.9.9.9:1", protocol_version=1, requested_rank=rank), timeout=10))
    # The coordinator's own certificate is not an agent's.
    result["join_as_coordinator"] = join(cfg["coordinator_cert"], -1, "agent-0")
    # An agent certificate bound to no rank, in a run that binds every rank.
    result["join_unbound"] = join(cfg["unbound"], 0, "agent-0")
    # agent-5's certificate is bound to rank 5: it asks for rank 1, free at this point.
    result["join_other_rank"] = join(cfg["stranger"], 1, "agent-1")
    print(json.dumps(result))


def main():
    cfg = json.loads(sys.argv[1])
    coordinator_pb2, coordinator_pb2_grpc, peer_pb2, peer_pb2_grpc = stubs(cfg["proto_dir"])
    if cfg.get("phase") == "join":
        return join_window(cfg, coordinator_pb2, coordinator_pb2_grpc)
    target = cfg["agents"][str(cfg["target_rank"])]
    claimed = cfg["claimed_rank"]
    result = {}

    def exchange(creds, frames, timeout=10):
        with grpc.secure_channel(target, creds) as ch:
            stub = peer_pb2_grpc.PeerStub(ch)
            for _ in stub.Exchange(iter(frames), timeout=timeout):
                pass

    def hello(run_id, rank, layout):
        f = peer_pb2.PeerFrame()
        f.hello.run_id = run_id
        f.hello.sender_rank = rank
        f.hello.protocol_version = 1
        f.hello.layout_hash = layout
        f.hello.codec = 1
        return f

    forged = hello(cfg["run_id"], claimed, cfg["layout_hash"])
    # 1. No client certificate: the TLS handshake fails.
    result["no_certificate"] = outcome(lambda: exchange(credentials(cfg, None), [forged]))
    # 2. A valid certificate of an agent that is not the claimed rank's (agent-5 claims rank 0).
    result["wrong_identity"] = outcome(lambda: exchange(credentials(cfg, cfg["stranger"]), [forged]))
    # 3. Garbage bytes on the Exchange method (a stream, but not protobuf).
    def garbage():
        with grpc.secure_channel(target, credentials(cfg, cfg["stranger"])) as ch:
            call = ch.stream_stream("/gut.v1.Peer/Exchange", request_serializer=lambda b: b,
                                    response_deserializer=lambda b: b)
            for _ in call(iter([b"\xff\xfe\xfd garbage that is not a PeerFrame \x00\x01"]), timeout=10):
                pass
    result["garbage"] = outcome(garbage)

    # 4. The coordinator: forged Report, Leave and Join under a taken name, with a valid stranger's
    #    certificate.
    with grpc.secure_channel(cfg["coordinator"], credentials(cfg, cfg["stranger"])) as ch:
        c = coordinator_pb2_grpc.CoordinatorStub(ch)
        report = coordinator_pb2.ReportRequest(run_id=cfg["run_id"])
        report.metrics.rank = claimed
        report.metrics.epoch = 1
        report.metrics.test_accuracy = 0.999
        result["forged_report"] = outcome(lambda: c.Report(report, timeout=10))
        result["forged_leave"] = outcome(lambda: c.Leave(
            coordinator_pb2.LeaveRequest(run_id=cfg["run_id"], rank=claimed, reason="forged", failed=True), timeout=10))
        result["join_taken_name"] = outcome(lambda: c.Join(coordinator_pb2.JoinRequest(
            agent_name="agent-%d" % claimed, advertised_address="10.9.9.9:1", protocol_version=1), timeout=10))
        result["forged_heartbeat"] = outcome(lambda: c.Heartbeat(
            coordinator_pb2.HeartbeatRequest(run_id=cfg["run_id"], rank=claimed, incarnation=1), timeout=10))

    # 5. Idle streams that never send a hello: each must be closed after the hello timeout (or
    #    refused at once beyond the cap), none held open.
    held = []
    lock = threading.Lock()

    def idle():
        never = threading.Event()

        def nothing():
            never.wait(60)
            return
            yield  # a generator that sends no frame
        t0 = time.monotonic()
        o = {"code": "OK"}
        try:
            with grpc.secure_channel(target, credentials(cfg, cfg["stranger"])) as ch:
                for _ in peer_pb2_grpc.PeerStub(ch).Exchange(nothing(), timeout=60):
                    pass
        except grpc.RpcError as e:
            o = {"code": e.code().name}
        never.set()
        o["seconds"] = time.monotonic() - t0
        with lock:
            held.append(o)

    threads = [threading.Thread(target=idle) for _ in range(cfg["idle_streams"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result["idle"] = held
    print(json.dumps(result))


if __name__ == "__main__":
    main()

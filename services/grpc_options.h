// Channel and server settings for gut's long-lived peer streams and control RPCs, in one struct so
// that the client's keepalive can never drop below what the server permits (docs/protocol.md
// "Keepalive": a client that pings faster than the server's min_recv_ping_interval gets GOAWAY
// "too_many_pings"; without max_pings_without_data = 0 a hung peer is never detected).
#ifndef GUT_SERVICES_GRPC_OPTIONS_H_
#define GUT_SERVICES_GRPC_OPTIONS_H_

#include <cstdint>

#include "absl/status/status.h"

namespace grpc {
class ChannelArguments;
class ServerBuilder;
}  // namespace grpc

namespace gut::services {

struct StreamTuning {
  int keepalive_time_ms = 10000;
  int keepalive_timeout_ms = 5000;
  int server_min_ping_interval_ms = 5000;  // must be <= keepalive_time_ms
  int initial_backoff_ms = 100;
  int max_backoff_ms = 2000;
  int chunk_bytes = 1 << 20;            // a round message is cut into frames of at most this
  int max_frame_bytes = (1 << 20) + (64 << 10);  // receive cap: one chunk plus headers
  // A receiver acknowledges every ack_every-th complete message, and any message it has not
  // acknowledged within ack_delay_ms (acks are cumulative): one small frame per round and edge
  // each way cost about a tenth of the message path's CPU on loopback (bench/exchange_bench).
  int ack_every = 8;
  int ack_delay_ms = 20;
  // A peer stream must complete its hello within this long, and at most this many streams may be
  // waiting for theirs at a time (docs/protocol.md "Admission"): idle or garbage connections
  // cannot pile up.
  int hello_timeout_ms = 5000;
  int max_pending_streams = 64;

  // Fast failure detection for tests (a hung peer is noticed in about 2 s).
  static StreamTuning ForTests();
  // Rejects settings that would make gRPC misbehave (names the field).
  absl::Status Validate() const;
  // Peer-stream channel (client side) and server; `peer_port` = false for the coordinator's
  // server, which faces many clients and keeps a ping-strike limit.
  void ApplyToChannel(grpc::ChannelArguments* args) const;
  void ApplyToServer(grpc::ServerBuilder* builder, bool peer_port) const;
};

}  // namespace gut::services

#endif  // GUT_SERVICES_GRPC_OPTIONS_H_

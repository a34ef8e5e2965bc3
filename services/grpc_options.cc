#include "services/grpc_options.h"

#include <grpcpp/server_builder.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"

namespace gut::services {

StreamTuning StreamTuning::ForTests() {
  StreamTuning t;
  t.keepalive_time_ms = 1000;
  t.keepalive_timeout_ms = 1000;
  t.server_min_ping_interval_ms = 500;
  t.initial_backoff_ms = 50;
  t.max_backoff_ms = 500;
  t.hello_timeout_ms = 1000;
  return t;
}

absl::Status StreamTuning::Validate() const {
  if (keepalive_time_ms <= 0 || keepalive_timeout_ms <= 0) {
    return absl::InvalidArgumentError("keepalive time and timeout must be positive");
  }
  if (server_min_ping_interval_ms > keepalive_time_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "server_min_ping_interval_ms (", server_min_ping_interval_ms,
        ") must not exceed keepalive_time_ms (", keepalive_time_ms,
        "): the server would answer the client's keepalive pings with GOAWAY too_many_pings"));
  }
  if (initial_backoff_ms <= 0 || max_backoff_ms < initial_backoff_ms) {
    return absl::InvalidArgumentError("need 0 < initial_backoff_ms <= max_backoff_ms");
  }
  if (chunk_bytes < 1024 || max_frame_bytes < chunk_bytes + 1024) {
    return absl::InvalidArgumentError(absl::StrCat("need chunk_bytes >= 1024 and max_frame_bytes (",
                                                   max_frame_bytes, ") >= chunk_bytes (", chunk_bytes,
                                                   ") + 1024 for the frame header"));
  }
  if (ack_every < 1 || ack_delay_ms < 1) return absl::InvalidArgumentError("need ack_every >= 1 and ack_delay_ms >= 1");
  if (hello_timeout_ms <= 0 || max_pending_streams < 1) {
    return absl::InvalidArgumentError("need hello_timeout_ms > 0 and max_pending_streams >= 1");
  }
  return absl::OkStatus();
}

void StreamTuning::ApplyToChannel(grpc::ChannelArguments* a) const {
  a->SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_time_ms);
  a->SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, keepalive_timeout_ms);
  a->SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  a->SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  a->SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, initial_backoff_ms);
  a->SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, initial_backoff_ms);
  a->SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
  a->SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 1000);
  a->SetMaxReceiveMessageSize(max_frame_bytes);
  a->SetMaxSendMessageSize(max_frame_bytes);
  // One connection per neighbour: do not share subchannels between the edges of one process
  // (an in-process test cluster would otherwise multiplex every edge on one TCP connection).
  a->SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // A whole round message fits the initial flow-control window: no WINDOW_UPDATE round trips
  // (each one costs a wake-up of the other process) while a message is in flight.
  a->SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
  a->SetInt(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 1 << 20);
}

void StreamTuning::ApplyToServer(grpc::ServerBuilder* b, bool peer_port) const {
  b->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, keepalive_time_ms);
  b->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, keepalive_timeout_ms);
  b->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  b->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                        server_min_ping_interval_ms);
  b->AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, peer_port ? 0 : 5);
  b->AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS, 10000);
  b->AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20);
  b->AddChannelArgument(GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 1 << 20);
  b->SetMaxReceiveMessageSize(max_frame_bytes);
  b->SetMaxSendMessageSize(max_frame_bytes);
}

}  // namespace gut::services

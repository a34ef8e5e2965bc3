// gut-agentd's life: serve the Peer service and health checks, join the run at the coordinator,
// load this agent's shard, train with the same core::Algorithm gut-sim runs (through the same epoch
// driver) over a GrpcExchange, report per-epoch metrics, checkpoint, follow the coordinator's
// recovery commands (roll back to a checkpoint, take a new topology), serve /metrics, and stop
// cleanly on request. docs/architecture.md describes the threads; docs/protocol.md the messages.
#ifndef GUT_AGENT_AGENT_H_
#define GUT_AGENT_AGENT_H_

#include <atomic>
#include <string>

#include "services/exchange_core.h"

namespace gut::agent {

struct AgentOptions {
  std::string coordinator;           // host:port of gut-coordinator
  std::string listen = "127.0.0.1:0";  // Peer service + health; port 0 picks a free one
  std::string advertise;             // host:port neighbours dial (default: the listen address)
  std::string data_dir;              // overrides the manifest's data.path
  // model.name: torchscript: this agent's own copy of the run's model file (it must be the one the
  // coordinator serves); empty: the coordinator hands the file over.
  std::string model_file;
  bool local_data = false;           // train on all of data_dir's training set (edge use)
  std::string checkpoint_dir;        // checkpoints, params-final.f32, model-final.pt, metrics.csv
  std::string metrics_address;       // Prometheus /metrics; empty: off
  std::string metrics_advertise;     // host:port the coordinator lists as scrape target
  std::string name;                  // default: hostname-pid
  int rank = -1;                     // requested rank (-1: any)
  int threads = 1;                   // LibTorch intra-op threads
  int compute_nice = 10;             // nice value of the training thread (0: unchanged)
  double join_timeout_s = 600;
  double stop_timeout_s = 10;        // after SIGTERM, everything is down within this
  double report_flush_s = 30;        // at the end, wait this long for undelivered reports
  double heartbeat_s = 0.25;         // heartbeat period
  bool fast_failure_detection = false;  // 1 s keepalive (tests)
  // --inject-forged-updates: a drill (and the adversary tests) playing a broken or hostile agent.
  services::Forgery forge;
  // Security (services/tls.h): mutual TLS on every channel when the three files are given; a
  // non-loopback listen without them needs `insecure`.
  std::string tls_ca, tls_cert, tls_key;
  bool insecure = false;
  std::string join_token_file;  // the coordinator's join token, if it requires one
  std::string health_listen;    // plaintext grpc.health.v1 only (Kubernetes probes); empty: off
};

// Runs the agent to completion. Returns the process exit code: 0 done (or stopped on request),
// 1 the run failed (the error is logged and reported to the coordinator), 2 bad flags or data.
// `stop` is set by SIGTERM/SIGINT.
int RunAgent(const AgentOptions& options, const std::atomic<bool>* stop);

}  // namespace gut::agent

#endif  // GUT_AGENT_AGENT_H_

// CoordinatorClient: an agent's side of the Coordinator service.
//  * Join: retried (with the agent's checkpoints) until the run starts, the coordinator refuses
//    for good, or the join timeout passes.
//  * Reports: queued and sent in order by a background thread, each retried until the
//    coordinator takes it; training never waits for the coordinator, and a coordinator that comes
//    back (restarted with --resume) gets everything.
//  * Heartbeats: a background thread sends the agent's state a few times a second and hands every
//    RunCommand the coordinator answers with to a callback (recovery, failure).
//  * Leave: one short call when the agent stops.
// Under TLS every answer is used only if the server's certificate has the coordinator role (an
// agent's certificate signed by the same CA cannot pose as the coordinator): Status, the first
// call an agent makes, carries nothing, so a listener without the role learns nothing from it.
// Thread-safety: every method may be called from any thread; the callbacks run on the heartbeat
// thread and must not block.
#ifndef GUT_SERVICES_COORDINATOR_CLIENT_H_
#define GUT_SERVICES_COORDINATOR_CLIENT_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/exchange/message_guard.h"
#include "gut/v1/coordinator.grpc.pb.h"
#include "services/peer_edge.h"
#include "services/tls.h"

namespace gut::services {

// The neighbours whose messages this agent refused (the message guard), for its heartbeat.
void AddRefusals(const core::RefusalLog& log, gut::v1::HeartbeatRequest* h);
// The neighbours whose stream is down (peers_down) and the time waited for each (waits).
void AddPeerState(const std::vector<PeerStats>& peers, gut::v1::HeartbeatRequest* h);

class CoordinatorClient {
 public:
  // `tls` null: plaintext.
  CoordinatorClient(const std::string& address, const TlsMaterial* tls);
  ~CoordinatorClient();  // stops the background threads

  // Retries while the coordinator is unreachable or the barrier times out, until `timeout`.
  // `stop`, when set, ends the wait (CANCELLED).
  absl::StatusOr<gut::v1::JoinResponse> Join(const gut::v1::JoinRequest& request, absl::Duration timeout,
                                             const std::atomic<bool>* stop);

  // The run's model file (FetchModel), `size` bytes as the JoinResponse announced; a stream that
  // sends more, out of order or less is an error. Retries while the coordinator is unreachable.
  absl::StatusOr<std::string> FetchModel(const gut::v1::FetchModelRequest& request, int64_t size,
                                         absl::Duration timeout);
  // The run's Status (run.numerics before joining), retried while the coordinator is unreachable.
  absl::StatusOr<gut::v1::StatusResponse> Status(absl::Duration timeout, const std::atomic<bool>* stop);
  void StartReporting(const std::string& run_id);
  void Report(const gut::v1::EpochMetrics& m);
  // Waits until every report is delivered; false if some are still queued after `seconds`.
  bool FlushReports(double seconds);
  size_t pending_reports();
  // The run-wide consensus distance the coordinator last answered with (-1: none yet).
  double consensus() const { return consensus_.load(); }

  // Heartbeats every `period`: `state` fills the request; `on_command` receives each answer.
  // `on_error` receives a refusal that means this process is no longer part of the run.
  void StartHeartbeats(absl::Duration period, std::function<gut::v1::HeartbeatRequest()> state,
                       std::function<void(const gut::v1::RunCommand&)> on_command,
                       std::function<void(const grpc::Status&)> on_refused);
  void StopHeartbeats();

  grpc::Status Leave(const gut::v1::LeaveRequest& request, absl::Duration timeout);

 private:
  void ReportLoop();
  void HeartbeatLoop(absl::Duration period);
  // OK unless TLS is on and the server that answered `ctx`'s call lacks the coordinator role.
  grpc::Status CheckServer(const grpc::ClientContext& ctx) const;

  std::string address_;
  bool tls_ = false;
  uint64_t nonce_ = 0;  // JoinRequest.process_nonce: this process, across Join retries
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<gut::v1::Coordinator::Stub> stub_;
  std::string run_id_;
  std::atomic<double> consensus_{-1};

  // Lock order: a leaf; no RPC and no callback (state, on_command, on_refused) runs under it.
  std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  std::deque<gut::v1::EpochMetrics> queue_;
  bool stop_reports_ = false, stop_heartbeats_ = false;
  bool flushing_ = false;  // someone waits for the queue: retry at once, not after a backoff
  std::function<gut::v1::HeartbeatRequest()> state_;
  std::function<void(const gut::v1::RunCommand&)> on_command_;
  std::function<void(const grpc::Status&)> on_refused_;
  std::thread reporter_, heartbeat_;
};

}  // namespace gut::services

#endif  // GUT_SERVICES_COORDINATOR_CLIENT_H_

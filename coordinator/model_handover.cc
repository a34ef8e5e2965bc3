// FetchModel: the coordinator hands the run's TorchScript model file to its agents, so that no
// agent (an edge device, a pod) needs a copy or a volume of its own. Only an agent that has joined
// gets it: the run id, a joined rank, the join token when one is required, and with TLS the
// identity bound to that rank. The file was read and hashed once at start; its SHA-256 went out in
// every JoinResponse, and the agent checks the bytes it receives against it.
#include <algorithm>

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_service.h"

namespace gut::coordinator {

grpc::Status CoordinatorService::FetchModel(grpc::ServerContext* ctx, const gut::v1::FetchModelRequest* req,
                                            grpc::ServerWriter<gut::v1::ModelChunk>* writer) {
  const std::string identity = IdentityOf(ctx);
  std::shared_ptr<const core::ModelFile> model;
  {
    absl::MutexLock l(&mu_);
    if (req->run_id() != run_id_) {
      return Refuse(Refusal::kRunId, grpc::StatusCode::FAILED_PRECONDITION,
                    absl::StrCat("model fetch for another run from ", ctx->peer()), "model fetch for another run");
    }
    if (!options_.join_token.empty() && !SameSecret(req->join_token(), options_.join_token)) {
      return Refuse(Refusal::kToken, grpc::StatusCode::UNAUTHENTICATED,
                    absl::StrCat("model fetch from ", ctx->peer(), " without the right join token"),
                    "join token missing or wrong");
    }
    if (req->rank() < 0 || req->rank() >= config_.num_agents) {
      return Refuse(Refusal::kBadRequest, grpc::StatusCode::INVALID_ARGUMENT,
                    absl::StrCat("model fetch for rank ", req->rank(), " from ", ctx->peer()),
                    absl::StrCat("rank must be in 0..", config_.num_agents - 1));
    }
    if (auto s = members_.CheckIdentity(req->rank(), identity); !s.ok()) {
      return Refuse(Refusal::kIdentity, grpc::StatusCode::PERMISSION_DENIED,
                    absl::StrCat("model fetch for rank ", req->rank(), " from ", ctx->peer(), " ('", identity,
                                 "'): ", s.message()),
                    std::string(s.message()));
    }
    model = model_;
  }
  if (model == nullptr) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "this run's model is built in; there is no file to fetch");
  }
  constexpr size_t kChunk = size_t{1} << 20;
  const std::string& bytes = model->bytes;
  for (size_t at = 0; at < bytes.size(); at += kChunk) {
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "the agent went away");
    gut::v1::ModelChunk c;
    c.set_offset(static_cast<int64_t>(at));
    c.set_data(bytes.substr(at, std::min(kChunk, bytes.size() - at)));
    if (!writer->Write(c)) return grpc::Status(grpc::StatusCode::CANCELLED, "the agent went away");
  }
  spdlog::info("handed the model file ({} bytes, sha256 {}) to rank {}", bytes.size(), model->sha256.substr(0, 12),
               req->rank());
  return grpc::Status::OK;
}

}  // namespace gut::coordinator

#include "services/peer_stream.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "services/exchange_core.h"
#include "services/peer_service.h"

namespace gut::services {

using gut::v1::PeerFrame;

PeerStream::PeerStream(bool client, PeerService* service) : client_(client), service_(service) {}

void PeerStream::Send(FramePtr f) {
  Enqueue(std::move(f));
  Kick();
}

void PeerStream::Enqueue(FramePtr f) {
  absl::MutexLock l(&smu_);
  if (!closing_) queue_.push_back(std::move(f));
}

void PeerStream::Kick() {
  FramePtr f;
  {
    absl::MutexLock l(&smu_);
    if (closing_ || writing_ || queue_.empty()) return;
    writing_ = true;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    f = current_;
    ++in_call_;
  }
  DoWrite(f.get());
  EndCall();
}

void PeerStream::Close(const grpc::Status& why) {
  Close(why, why.ok() ? Mode::kDrain : (client_ ? Mode::kCancel : Mode::kDiscard));
}

void PeerStream::Close(const grpc::Status& why, Mode mode) {
  const bool cancel = mode == Mode::kCancel;
  bool cancel_finished_client = false;
  {
    absl::MutexLock l(&smu_);
    // A client that already half-closed waits for the server's status; cancelling is its only
    // way out if that never comes. A finished server stream needs nothing: OnDone follows Finish.
    if (finished_) {
      if (!(cancel && client_)) return;
      cancel_finished_client = true;
    } else if (!closing_) {
      closing_ = true;
      close_status_ = why;
    } else if (!cancel) {
      return;
    }
    if (mode != Mode::kDrain) queue_.clear();
    if (cancel && !finished_) ++in_call_;  // no Finish while the cancel is being issued
  }
  if (cancel_finished_client) return DoCancel();
  if (cancel) {
    DoCancel();
    EndCall();
  } else {
    EndCall(/*entered=*/false);
  }
}

std::string PeerStream::PeerIdentity() const {
  const grpc::AuthContext* auth = Auth();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  // The certificate's common name names the agent (the SANs carry addresses for hostname checks).
  for (const auto& v : auth->FindPropertyValues("x509_common_name")) return std::string(v.data(), v.size());
  return "";
}

std::string PeerStream::DebugState() {
  absl::MutexLock l(&smu_);
  return absl::StrCat(client_ ? "client" : "server", " to ", peer_, ": closing=", closing_, " writing=", writing_,
                      " in_call=", in_call_, " finished=", finished_, " read_failed=", read_failed_,
                      " queued=", queue_.size());
}

void PeerStream::ReadNext() {
  {
    absl::MutexLock l(&smu_);
    if (closing_ || read_failed_) return;
    ++in_call_;
  }
  DoRead();
  EndCall();
}

void PeerStream::WriteDone(bool ok) {
  FramePtr next;
  {
    absl::MutexLock l(&smu_);
    current_.reset();
    if (!ok) {
      closing_ = true;
      queue_.clear();
    }
    if (!queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      next = current_;
      ++in_call_;
    } else {
      writing_ = false;
    }
  }
  if (next) {
    DoWrite(next.get());
    EndCall();
  } else {
    EndCall(/*entered=*/false);
  }
}

void PeerStream::ReadFailed() {
  {
    absl::MutexLock l(&smu_);
    read_failed_ = true;
  }
  Close(grpc::Status::OK);
}

void PeerStream::EndCall(bool entered) {
  grpc::Status status;
  bool graceful = false;
  {
    absl::MutexLock l(&smu_);
    if (entered) --in_call_;
    if (!closing_ || writing_ || in_call_ > 0 || finished_) return;
    finished_ = true;
    status = close_status_;
    graceful = close_status_.ok() && !read_failed_;
  }
  DoFinish(status, graceful);
}

void PeerStream::ApplyActions(StreamActions& a) {
  if (a.close_other) a.close_other->Close(grpc::Status(grpc::StatusCode::CANCELLED, "replaced by a newer stream"));
  if (a.refuse) return Close(a.refusal);
  for (auto& f : a.send) Send(std::move(f));
  if (a.kick) Kick();
  ReadNext();
}

void PeerStream::OnFrame() {
  if (core_ == nullptr) {
    // A server stream's first frame: it belongs to whatever exchange the service has now.
    core_ = service_->AcceptFirstFrame(this);
    if (core_ == nullptr) {
      StreamActions a;
      a.refuse = true;
      a.refusal = grpc::Status(grpc::StatusCode::UNAVAILABLE, "agent has not joined a run yet");
      return ApplyActions(a);
    }
  }
  StreamActions a = core_->HandleFrame(this, in_);
  ApplyActions(a);
}

void PeerStream::Done(const grpc::Status& s) {
  if (core_ != nullptr) core_->StreamDone(this, s);
  if (!client_) service_->StreamGone(this);
  auto keep = std::move(self_);  // may destroy this stream at the end of the scope
}

namespace {

class ClientStream final : public PeerStream, public grpc::ClientBidiReactor<PeerFrame, PeerFrame> {
 public:
  ClientStream(std::shared_ptr<ExchangeCore> core, int edge, PeerService* service, std::string address)
      : PeerStream(/*client=*/true, service) {
    core_ = std::move(core);
    expected_edge = edge;
    peer_ = std::move(address);
  }

  void Begin(std::shared_ptr<ClientStream> self, std::shared_ptr<gut::v1::Peer::Stub> stub, const PeerFrame& hello) {
    self_ = self;
    stub_ = stub;
    hello_ = std::make_shared<PeerFrame>(hello);
    ctx_.set_wait_for_ready(true);
    stub->async()->Exchange(&ctx_, this);
    AddHold();
    core_->ClientStreamStarted(expected_edge, self);
    ReadNext();
    Send(hello_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return ReadFailed();
    OnFrame();
  }
  void OnWriteDone(bool ok) override { WriteDone(ok); }
  void OnDone(const grpc::Status& s) override { Done(s); }

 private:
  void DoWrite(const PeerFrame* f) override { StartWrite(f); }
  void DoRead() override { StartRead(&in_); }
  void DoFinish(const grpc::Status&, bool graceful) override {
    if (graceful) StartWritesDone();
    RemoveHold();
  }
  void DoCancel() override { ctx_.TryCancel(); }
  const grpc::AuthContext* Auth() const override {
    auth_ = ctx_.auth_context();
    return auth_.get();
  }

  grpc::ClientContext ctx_;
  std::shared_ptr<gut::v1::Peer::Stub> stub_;  // its channel outlives the call
  FramePtr hello_;
  mutable std::shared_ptr<const grpc::AuthContext> auth_;
};

class ServerStream final : public PeerStream, public grpc::ServerBidiReactor<PeerFrame, PeerFrame> {
 public:
  ServerStream(PeerService* service, grpc::CallbackServerContext* ctx)
      : PeerStream(/*client=*/false, service), ctx_(ctx) {
    peer_ = ctx->peer();
  }

  void Begin(std::shared_ptr<ServerStream> self) {
    self_ = self;
    if (!service_->AdmitPending(self)) {
      MarkRefusedBeforeHello();
      return Close(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many streams waiting for their hello"),
                   Mode::kDiscard);
    }
    ReadNext();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      if (!hello_seen_) {
        if (refused_before_hello_) return;  // closed by the service, which counted why
        service_->CountReject(Reject::kProtocol);
        spdlog::warn("peer stream from {} ended before its hello (unreadable bytes, an oversized frame, or the "
                     "client went away)", peer_);
        return Close(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no hello"), Mode::kDiscard);
      }
      return ReadFailed();
    }
    hello_seen_ = true;
    OnFrame();
  }
  void OnWriteDone(bool ok) override { WriteDone(ok); }
  void OnCancel() override { Close(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"), Mode::kDiscard); }
  void OnDone() override { Done(grpc::Status::OK); }

 private:
  void DoWrite(const PeerFrame* f) override { StartWrite(f); }
  void DoRead() override { StartRead(&in_); }
  void DoFinish(const grpc::Status& s, bool) override { Finish(s); }
  void DoCancel() override { ctx_->TryCancel(); }
  const grpc::AuthContext* Auth() const override {
    auth_ = ctx_->auth_context();
    return auth_.get();
  }

  grpc::CallbackServerContext* ctx_;
  bool hello_seen_ = false;  // reactions run one at a time per stream
  mutable std::shared_ptr<const grpc::AuthContext> auth_;
};

}  // namespace

void StartClientStream(std::shared_ptr<ExchangeCore> core, int edge, std::shared_ptr<gut::v1::Peer::Stub> stub,
                       const PeerFrame& hello) {
  PeerService* service = core->service();
  const std::string address = core->EdgeAddress(edge);
  auto s = std::make_shared<ClientStream>(std::move(core), edge, service, address);
  ClientStream* raw = s.get();
  raw->Begin(std::move(s), std::move(stub), hello);
}

grpc::ServerBidiReactor<PeerFrame, PeerFrame>* StartServerStream(PeerService* service,
                                                                  grpc::CallbackServerContext* context) {
  auto s = std::make_shared<ServerStream>(service, context);
  ServerStream* raw = s.get();
  raw->Begin(std::move(s));
  return raw;
}

}  // namespace gut::services

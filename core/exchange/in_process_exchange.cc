#include "core/exchange/in_process_exchange.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/exchange/message_guard.h"
#include "core/exchange/weighted_sum.h"

namespace gut::core {

template <typename T>
class InProcessExchange<T>::EndpointImpl final : public Neighbourhood<T> {
 public:
  EndpointImpl(InProcessExchange* hub, const MixingMatrix& w, int rank, uint64_t codec_seed)
      : hub_(hub), rank_(rank), self_weight_(w.self_weight(rank)),
        codec_(hub->codec_, DeriveSeed(codec_seed, rank, SeedPurpose::kCodec)) {
    const auto& nb = w.graph().neighbours(rank);
    for (size_t k = 0; k < nb.size(); ++k) neighbours_.push_back({nb[k], w.weight(rank, k)});
  }

  int rank() const override { return rank_; }
  double self_weight() const override { return self_weight_; }
  const std::vector<NeighbourInfo>& neighbours() const override { return neighbours_; }

  void NoteModelNorm(double norm) override { guard_.NoteModelNorm(norm); }

  absl::Status Broadcast(int64_t round, int slot, absl::Span<T> message) override {
    auto m = Encode(message, MessageTag{round, slot, -1});
    if (!m.ok()) return m.status();
    guard_.Sent(slot, -1, (*m)->values);
    if (forgery_.Active(round, slot)) {
      // The drill: neighbours get the forged values; `message` keeps the honest decoded ones.
      forgery_.Forge<T>(message, &forged_);
      m = Encode(absl::MakeSpan(forged_), MessageTag{round, slot, -1});
      if (!m.ok()) return m.status();
    }
    for (const auto& nb : neighbours_) {
      if (auto s = hub_->Post(rank_, nb.rank, round, slot, *m); !s.ok()) return s;
    }
    sent_ += static_cast<int64_t>(neighbours_.size()) * (*m)->wire_bytes;
    raw_sent_ += static_cast<int64_t>(neighbours_.size() * message.size() * sizeof(float));
    return absl::OkStatus();
  }

  absl::Status SendTo(int64_t round, int slot, int neighbour_index,
                      absl::Span<T> message) override {
    if (neighbour_index < 0 || neighbour_index >= static_cast<int>(neighbours_.size())) {
      return absl::InvalidArgumentError(absl::StrCat("agent ", rank_, ": neighbour index ",
                                                     neighbour_index, " out of range"));
    }
    auto m = Encode(message, MessageTag{round, slot, neighbour_index});
    if (!m.ok()) return m.status();
    guard_.Sent(slot, neighbour_index, (*m)->values);
    sent_ += (*m)->wire_bytes;
    raw_sent_ += static_cast<int64_t>(message.size() * sizeof(float));
    return hub_->Post(rank_, neighbours_[neighbour_index].rank, round, slot, *m);
  }

  absl::Status ReceiveWeightedSum(int64_t round, int slot, absl::Span<T> out) override {
    std::vector<Message> got;
    if (auto s = Collect(round, slot, &got); !s.ok()) return s;
    for (size_t k = 0; k < got.size(); ++k) {
      if (got[k]->values.size() != out.size()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "agent ", rank_, ": message from agent ", neighbours_[k].rank, " has ",
            got[k]->values.size(), " elements, expected ", out.size()));
      }
    }
    const auto views = Screen(round, slot, got);
    std::vector<const T*> m(got.size());
    for (size_t k = 0; k < got.size(); ++k) m[k] = views[k].data();
    WeightedSum<T>(neighbours_, m, out);
    return absl::OkStatus();
  }

  absl::Status ReceiveEach(
      int64_t round, int slot,
      const std::function<void(int, absl::Span<const T>)>& fn) override {
    std::vector<Message> got;
    if (auto s = Collect(round, slot, &got); !s.ok()) return s;
    const auto views = Screen(round, slot, got);
    for (size_t k = 0; k < got.size(); ++k) fn(static_cast<int>(k), views[k]);
    return absl::OkStatus();
  }

  const RefusalLog& refusals() const { return refusals_; }
  void SetForgery(const Forgery& f) { forgery_ = f; }

  int64_t bytes_sent() const override { return sent_; }
  int64_t bytes_received() const override { return received_; }
  int64_t raw_bytes_sent() const override { return raw_sent_; }
  void RestoreCounters(int64_t sent, int64_t received, int64_t raw_sent) {
    sent_ = sent;
    received_ = received;
    raw_sent_ = raw_sent;
  }

 private:
  // A shared buffer for one outgoing message. Buffers every receiver has released are reused,
  // so steady-state rounds allocate nothing.
  std::shared_ptr<Payload> Buffer(size_t n) {
    for (auto& b : pool_) {
      if (b.use_count() == 1 && b->values.size() == n) return b;
    }
    auto b = std::make_shared<Payload>();
    b->values.resize(n);
    if (pool_.size() < kPoolSize) pool_.push_back(b);
    return b;
  }

  // The message as the receivers will see it. Plain fp32 is copied; any other codec is encoded
  // (which leaves the decoded values in `message`, for the sender's public copy) and decoded
  // again into the shared buffer, exactly as a remote receiver would. A double exchange (the
  // algorithm tests) goes through the codec in float, the precision the wire has.
  absl::StatusOr<Message> Encode(absl::Span<T> message, const MessageTag& tag) {
    std::shared_ptr<Payload> b = Buffer(message.size());
    const CodecOptions& o = codec_.options();
    if (o.kind != CodecKind::kFp32 || o.zstd) {
      absl::Span<float> v;
      if constexpr (std::is_same_v<T, float>) {
        v = message;
      } else {
        narrow_.assign(message.begin(), message.end());
        v = absl::MakeSpan(narrow_);
      }
      codec_.Encode(v, &wire_, tag);
      // Decoded with the sender's seed, as every receiver does.
      if constexpr (std::is_same_v<T, float>) {
        if (auto s = codec_.Decode(wire_, absl::MakeSpan(b->values), codec_.seed(), tag); !s.ok()) return s;
      } else {
        decoded_.resize(message.size());
        if (auto s = codec_.Decode(wire_, absl::MakeSpan(decoded_), codec_.seed(), tag); !s.ok()) return s;
        std::copy(decoded_.begin(), decoded_.end(), b->values.begin());
        std::copy(v.begin(), v.end(), message.begin());
      }
      b->wire_bytes = static_cast<int64_t>(wire_.size());
      return Message(b);
    }
    std::copy(message.begin(), message.end(), b->values.begin());
    b->wire_bytes = static_cast<int64_t>(message.size() * sizeof(float));
    return Message(b);
  }
  static constexpr size_t kPoolSize = 16;

  // The messages as the algorithm gets them: implausible ones replaced (message_guard.h), exactly
  // as the gRPC exchange does, so gut-sim and a cluster agree on every refusal.
  std::vector<absl::Span<const T>> Screen(int64_t round, int slot, const std::vector<Message>& got) {
    std::vector<absl::Span<const T>> views(got.size());
    for (size_t k = 0; k < got.size(); ++k) views[k] = got[k]->values;
    ScreenMessages(&guard_, slot, &views,
                   [&](int k, const GuardVerdict&) { refusals_.Add(neighbours_[k].rank, round); });
    return views;
  }

  absl::Status Collect(int64_t round, int slot, std::vector<Message>* got) {
    absl::MutexLock lock(&hub_->mu_);
    auto& box = hub_->mailbox_[rank_];
    auto& last = hub_->received_[rank_];
    if (auto it = last.find(slot); it != last.end() && round <= it->second) {
      return absl::FailedPreconditionError(absl::StrCat("agent ", rank_, ": round ", round,
                                                        " slot ", slot, " was already received"));
    }
    auto all_in = [&]() {
      for (const auto& nb : neighbours_)
        if (box.find(Key{round, slot, nb.rank}) == box.end()) return false;
      return true;
    };
    const absl::Condition cond(&all_in);
    if (!hub_->mu_.AwaitWithTimeout(cond, hub_->deadline_)) {
      std::vector<int> missing;
      for (const auto& nb : neighbours_)
        if (box.find(Key{round, slot, nb.rank}) == box.end()) missing.push_back(nb.rank);
      return absl::DeadlineExceededError(absl::StrCat(
          "agent ", rank_, ": round ", round, " slot ", slot, ": no message from agent(s) ",
          absl::StrJoin(missing, ", "), " within ", absl::FormatDuration(hub_->deadline_)));
    }
    got->clear();
    for (const auto& nb : neighbours_) {
      auto it = box.find(Key{round, slot, nb.rank});
      received_ += it->second->wire_bytes;
      got->push_back(std::move(it->second));
      box.erase(it);
    }
    last[slot] = round;
    return absl::OkStatus();
  }

  InProcessExchange* hub_;
  int rank_;
  double self_weight_;
  std::vector<NeighbourInfo> neighbours_;
  std::atomic<int64_t> sent_{0}, received_{0}, raw_sent_{0};
  // Touched by the owning agent's thread only.
  std::vector<std::shared_ptr<Payload>> pool_;
  Codec codec_;
  std::string wire_;
  std::vector<float> narrow_, decoded_;  // codec scratch
  MessageGuard<T> guard_;
  Forgery forgery_;
  std::vector<T> forged_;
  RefusalLog refusals_;  // the messages the guard refused, by sender
};

template <typename T>
InProcessExchange<T>::InProcessExchange(const MixingMatrix& w, absl::Duration deadline,
                                        CodecOptions codec, uint64_t codec_seed)
    : deadline_(deadline), codec_(codec), mailbox_(w.size()), received_(w.size()) {
  for (int i = 0; i < w.size(); ++i)
    endpoints_.push_back(std::make_unique<EndpointImpl>(this, w, i, codec_seed));
}

template <typename T>
InProcessExchange<T>::~InProcessExchange() = default;

template <typename T>
Neighbourhood<T>& InProcessExchange<T>::Endpoint(int rank) {
  return *endpoints_[rank];
}

template <typename T>
absl::Status InProcessExchange<T>::Post(int from, int to, int64_t round, int slot,
                                        const Message& m) {
  absl::MutexLock lock(&mu_);
  if (auto it = received_[to].find(slot); it != received_[to].end() && round <= it->second) {
    return absl::FailedPreconditionError(absl::StrCat("agent ", from, " sent round ", round,
                                                      " slot ", slot, " to agent ", to,
                                                      ", which has already received that round"));
  }
  auto [it, inserted] = mailbox_[to].emplace(Key{round, slot, from}, m);
  if (!inserted) {
    return absl::AlreadyExistsError(absl::StrCat("agent ", from, " sent round ", round, " slot ",
                                                 slot, " to agent ", to, " twice"));
  }
  return absl::OkStatus();
}

template <typename T>
void InProcessExchange<T>::RestoreByteCounters(int rank, int64_t sent, int64_t received, int64_t raw_sent) {
  endpoints_[rank]->RestoreCounters(sent, received, raw_sent);
}

template <typename T>
RefusalLog InProcessExchange<T>::Refusals() const {
  RefusalLog all;
  for (const auto& e : endpoints_) all.Merge(e->refusals());
  return all;
}

template <typename T>
void InProcessExchange<T>::SetForgery(int rank, const Forgery& f) {
  endpoints_[rank]->SetForgery(f);
}

template <typename T>
int64_t InProcessExchange<T>::messages_refused(int rank) const {
  return endpoints_[rank]->refusals().Total();
}

template <typename T>
int64_t InProcessExchange<T>::total_raw_bytes_sent() const {
  int64_t total = 0;
  for (const auto& e : endpoints_) total += e->raw_bytes_sent();
  return total;
}

template <typename T>
int64_t InProcessExchange<T>::total_bytes_sent() const {
  int64_t total = 0;
  for (const auto& e : endpoints_) total += e->bytes_sent();
  return total;
}

template class InProcessExchange<float>;
template class InProcessExchange<double>;

}  // namespace gut::core

// InProcessExchange: the Neighbourhood of n agents that live in one process (gut-sim, tests).
// The hub owns one mailbox per agent; Endpoint(i) is agent i's Neighbourhood. A broadcast stores
// the message once (shared, immutable) and posts it to every neighbour's mailbox, so a round costs
// one copy per sender, not one per edge. With a codec other than plain fp32 (float exchanges
// only) every message is really encoded and decoded, so lossy codecs act exactly as on the wire;
// byte counters report the encoded sizes (fp32 without a codec: 4 bytes per value).
//
// Thread-safety: any endpoint may be used from any thread, one thread per endpoint at a time.
// The hub must outlive its endpoints.
#ifndef GUT_CORE_EXCHANGE_IN_PROCESS_EXCHANGE_H_
#define GUT_CORE_EXCHANGE_IN_PROCESS_EXCHANGE_H_

#include <atomic>
#include <map>
#include <memory>
#include <tuple>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/codec/codec.h"
#include "core/exchange/forgery.h"
#include "core/exchange/message_guard.h"
#include "core/exchange/neighbourhood.h"
#include "core/topology/mixing.h"

namespace gut::core {

template <typename T>
class InProcessExchange {
 public:
  explicit InProcessExchange(const MixingMatrix& w, absl::Duration deadline = absl::Seconds(60),
                             CodecOptions codec = CodecOptions(), uint64_t codec_seed = 0);
  InProcessExchange(const InProcessExchange&) = delete;
  InProcessExchange& operator=(const InProcessExchange&) = delete;

  ~InProcessExchange();
  Neighbourhood<T>& Endpoint(int rank);
  int size() const { return static_cast<int>(endpoints_.size()); }
  int64_t total_bytes_sent() const;
  int64_t total_raw_bytes_sent() const;
  // The drill (core/exchange/forgery.h): agent `rank` forges what its neighbours receive.
  void SetForgery(int rank, const Forgery& f);
  // Messages refused by any agent, by sender (read between rounds).
  RefusalLog Refusals() const;
  // Messages agent `rank` refused as implausible (core/exchange/message_guard.h).
  int64_t messages_refused(int rank) const;
  // Puts agent `rank`'s byte counters back where a checkpoint recorded them.
  void RestoreByteCounters(int rank, int64_t sent, int64_t received, int64_t raw_sent);

 private:
  class EndpointImpl;
  using Key = std::tuple<int64_t, int, int>;  // (round, slot, sender)
  struct Payload {
    std::vector<T> values;
    int64_t wire_bytes = 0;
  };
  using Message = std::shared_ptr<const Payload>;

  absl::Status Post(int from, int to, int64_t round, int slot, const Message& m);

  absl::Duration deadline_;
  CodecOptions codec_;
  absl::Mutex mu_;
  std::vector<std::map<Key, Message>> mailbox_ ABSL_GUARDED_BY(mu_);
  // Per receiver and slot: the last round already received (messages at or below it are stale).
  std::vector<std::map<int, int64_t>> received_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<EndpointImpl>> endpoints_;
};

extern template class InProcessExchange<float>;
extern template class InProcessExchange<double>;

}  // namespace gut::core

#endif  // GUT_CORE_EXCHANGE_IN_PROCESS_EXCHANGE_H_

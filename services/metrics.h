// The /metrics endpoint of a gut process: the process's prometheus-cpp registry plus the standard
// process_* metrics read from /proc (prometheus-cpp 1.0.1 has no process collector), in the
// Prometheus text format, served by a minimal HTTP/1.1 server of our own (one accepting thread).
// (prometheus-cpp's civetweb Exposer cannot start in a process that has LibTorch loaded: mg_start
// returns null, reproduced with a five-line program linked against libtorch_cpu; and its
// destructor blocks about 2 s.) GET /metrics answers; anything else gets 404. Each connection is
// served on a thread of its own (at most kMaxConnections at once; more are closed at once) and
// must deliver its request within 2 s in all, so a slow client (a byte every second) holds only its
// own connection, never a scrape.
#ifndef GUT_SERVICES_METRICS_H_
#define GUT_SERVICES_METRICS_H_

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include "absl/status/statusor.h"

namespace prometheus {
class Collectable;
class Registry;
}  // namespace prometheus

namespace gut::services {

class MetricsEndpoint {
 public:
  // Extra pages (the coordinator's status page): GET `path` answers with what `page` returns,
  // (content type, body). Called on a connection's thread, several at once: keep it quick and thread-safe.
  using Page = std::function<std::pair<std::string, std::string>()>;
  // `headers`: extra response headers for this page (a Content-Security-Policy).
  void Serve(const std::string& path, Page page, std::vector<std::pair<std::string, std::string>> headers = {});
  static constexpr int kMaxConnections = 32;
  // A collector read at every render (values that must be current at scrape time, not at the
  // last Sync). It must outlive the endpoint or the process.
  void AddCollectable(std::shared_ptr<prometheus::Collectable> c);

  // Serves http://ADDRESS/metrics (IPv4 "host:port"; port 0 picks a free one, see port()).
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(const std::string& address);
  ~MetricsEndpoint();
  prometheus::Registry& registry() { return *registry_; }
  int port() const { return port_; }
  // The page as it would be served now.
  std::string Render() const;

 private:
  MetricsEndpoint() = default;
  void Loop();
  void Handle(int connection);
  std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex pages_mu_;  // lock order: a leaf (a page is called after it is released)
  std::map<std::string, Page> pages_;  // guarded by pages_mu_
  std::map<std::string, std::vector<std::pair<std::string, std::string>>> headers_;  // guarded by pages_mu_
  // Connections being served; the destructor waits for them. Lock order: a leaf.
  std::mutex conn_mu_;
  std::condition_variable conn_cv_;
  int active_ = 0;  // guarded by conn_mu_
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;  // guarded by pages_mu_
  std::shared_ptr<class ProcessCollector> process_;
  int fd_ = -1, wake_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;
};

// A counter read from `read` at every scrape (a count kept elsewhere, e.g. TlsHandshakeFailures).
std::shared_ptr<prometheus::Collectable> CounterCollector(std::string name, std::string help,
                                                          std::function<double()> read);

// A gauge that is registered on its first Set: a series with no meaningful value before its
// first measurement (a loss, an accuracy, an ETA) is absent rather than a placeholder 0 or -1.
class LazyGauge {
 public:
  LazyGauge(prometheus::Family<prometheus::Gauge>& family, std::map<std::string, std::string> labels = {})
      : family_(family), labels_(std::move(labels)) {}
  void Set(double v) {
    if (g_ == nullptr) g_ = &family_.Add(labels_);
    g_->Set(v);
  }

 private:
  prometheus::Family<prometheus::Gauge>& family_;
  std::map<std::string, std::string> labels_;
  prometheus::Gauge* g_ = nullptr;
};

// Histogram buckets for durations: 1 ms to 60 s, six per decade.
std::vector<double> DurationBuckets();

// Registering one metric by name and help text, for the agent's and the coordinator's metric
// types. A family takes its labels later; the others are the one unlabelled series of their family.
prometheus::Family<prometheus::Gauge>& MakeGaugeFamily(prometheus::Registry& r, const std::string& name,
                                                       const std::string& help);
prometheus::Gauge& MakeGauge(prometheus::Registry& r, const std::string& name, const std::string& help);
prometheus::Family<prometheus::Counter>& MakeCounterFamily(prometheus::Registry& r, const std::string& name,
                                                           const std::string& help);
prometheus::Counter& MakeCounter(prometheus::Registry& r, const std::string& name, const std::string& help);
prometheus::Histogram& MakeHistogram(prometheus::Registry& r, const std::string& name,
                                     const std::string& help);  // DurationBuckets

}  // namespace gut::services

#endif  // GUT_SERVICES_METRICS_H_

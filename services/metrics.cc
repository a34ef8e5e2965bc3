#include "services/metrics.h"

#include <tuple>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace gut::services {

class ProcessCollector final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    auto add = [&](const char* name, const char* help, prometheus::MetricType type, double v) {
      prometheus::MetricFamily f;
      f.name = name;
      f.help = help;
      f.type = type;
      prometheus::ClientMetric m;
      if (type == prometheus::MetricType::Counter) {
        m.counter.value = v;
      } else {
        m.gauge.value = v;
      }
      f.metric.push_back(m);
      out.push_back(std::move(f));
    };
    const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
    std::ifstream stat("/proc/self/stat");
    std::string line;
    if (std::getline(stat, line)) {
      // Fields after the command name (which may contain spaces) start at ") ".
      std::istringstream in(line.substr(line.rfind(')') + 2));
      std::vector<std::string> f;
      for (std::string x; in >> x;) f.push_back(x);
      // f[0] is field 3 (state); utime is field 14, stime 15, starttime 22.
      if (f.size() > 19) {
        add("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
            prometheus::MetricType::Counter, (std::stod(f[11]) + std::stod(f[12])) / tick);
        std::ifstream up("/proc/uptime");
        double uptime = 0;
        up >> uptime;
        const double boot = static_cast<double>(time(nullptr)) - uptime;
        add("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
            prometheus::MetricType::Gauge, boot + std::stod(f[19]) / tick);
      }
    }
    std::ifstream statm("/proc/self/statm");
    double size = 0, resident = 0;
    if (statm >> size >> resident) {
      const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
      add("process_resident_memory_bytes", "Resident memory size in bytes.",
          prometheus::MetricType::Gauge, resident * page);
      add("process_virtual_memory_bytes", "Virtual memory size in bytes.",
          prometheus::MetricType::Gauge, size * page);
    }
    return out;
  }
};

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("metrics: address '", address, "' is not host:port"));
  }
  std::string host = address.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics: bad port in '", address, "'"));
  }
  if (host.empty() || host == "*") host = "0.0.0.0";
  if (host == "localhost") host = "127.0.0.1";
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("metrics: '", host, "' is not an IPv4 address"));
  }
  std::unique_ptr<MetricsEndpoint> m(new MetricsEndpoint());
  m->registry_ = std::make_shared<prometheus::Registry>();
  m->process_ = std::make_shared<ProcessCollector>();
  m->fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(m->fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (m->fd_ < 0 || bind(m->fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 || listen(m->fd_, 16) != 0) {
    return absl::UnavailableError(absl::StrCat("metrics: cannot listen on '", address, "': ", std::strerror(errno)));
  }
  socklen_t len = sizeof(sa);
  getsockname(m->fd_, reinterpret_cast<sockaddr*>(&sa), &len);
  m->port_ = ntohs(sa.sin_port);
  if (pipe2(m->wake_, O_CLOEXEC) != 0) return absl::InternalError("metrics: pipe2 failed");
  MetricsEndpoint* raw = m.get();
  m->thread_ = std::thread([raw] { raw->Loop(); });
  return m;
}

MetricsEndpoint::~MetricsEndpoint() {
  if (thread_.joinable()) {
    (void)!write(wake_[1], "x", 1);
    thread_.join();
  }
  // Connections still being served use this object: each ends within its deadlines (~4 s).
  std::unique_lock<std::mutex> l(conn_mu_);
  conn_cv_.wait(l, [this] { return active_ == 0; });
  for (int fd : {fd_, wake_[0], wake_[1]})
    if (fd >= 0) close(fd);
}

void MetricsEndpoint::AddCollectable(std::shared_ptr<prometheus::Collectable> c) {
  std::lock_guard<std::mutex> l(pages_mu_);
  collectables_.push_back(std::move(c));
}

std::string MetricsEndpoint::Render() const {
  auto families = registry_->Collect();
  for (auto& f : process_->Collect()) families.push_back(std::move(f));
  std::vector<std::shared_ptr<prometheus::Collectable>> extra;
  {
    std::lock_guard<std::mutex> l(pages_mu_);
    extra = collectables_;
  }
  for (const auto& c : extra)
    for (auto& f : c->Collect()) families.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(families);
}

void MetricsEndpoint::Serve(const std::string& path, Page page,
                            std::vector<std::pair<std::string, std::string>> headers) {
  std::lock_guard<std::mutex> l(pages_mu_);
  pages_[path] = std::move(page);
  headers_[path] = std::move(headers);
}

void MetricsEndpoint::Loop() {
  for (;;) {
    pollfd p[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[1].revents != 0) return;
    const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;
    {
      std::lock_guard<std::mutex> l(conn_mu_);
      if (active_ >= kMaxConnections) {  // a flood of connections costs the flood, not the scrapes
        close(c);
        continue;
      }
      ++active_;
    }
    std::thread([this, c] {
      Handle(c);
      std::lock_guard<std::mutex> l(conn_mu_);
      --active_;
      conn_cv_.notify_all();
    }).detach();
  }
}

void MetricsEndpoint::Handle(int c) {
  timeval tv{2, 0};
  setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  // The whole request within 2 s, however slowly its bytes arrive.
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::string req;
  char buf[2048];
  while (req.find("\r\n\r\n") == std::string::npos && req.size() < 16384) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    pollfd p{c, POLLIN, 0};
    if (left.count() <= 0 || poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    const ssize_t n = recv(c, buf, sizeof(buf), 0);
    if (n <= 0) break;
    req.append(buf, static_cast<size_t>(n));
  }
  std::string status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8", body;
  // "GET /path?query HTTP/1.1": the path alone decides.
  std::string path;
  if (req.rfind("GET ", 0) == 0) path = req.substr(4, req.find_first_of(" ?\r\n", 4) - 4);
  Page page;
  std::string extra;
  {
    std::lock_guard<std::mutex> l(pages_mu_);
    if (auto it = pages_.find(path); it != pages_.end()) page = it->second;
    if (auto it = headers_.find(path); it != headers_.end())
      for (const auto& [k, v] : it->second) absl::StrAppend(&extra, k, ": ", v, "\r\n");
  }
  if (path == "/metrics") {
    body = Render();
  } else if (page) {
    std::tie(type, body) = page();
  } else if (path == "/") {
    type = "text/html";
    body = "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n";
  } else {
    status = "404 Not Found";
    body = "not found: this endpoint serves /metrics\n";
  }
  const std::string head = absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type,
                                        "\r\nContent-Length: ", body.size(),
                                        "\r\nX-Content-Type-Options: nosniff\r\n", extra,
                                        "Connection: close\r\n\r\n");
  const std::string out = head + body;
  size_t sent = 0;
  while (sent < out.size()) {
    const ssize_t n = send(c, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  close(c);
}

namespace {
class ReadCounter final : public prometheus::Collectable {
 public:
  ReadCounter(std::string name, std::string help, std::function<double()> read)
      : name_(std::move(name)), help_(std::move(help)), read_(std::move(read)) {}
  std::vector<prometheus::MetricFamily> Collect() const override {
    prometheus::MetricFamily f;
    f.name = name_;
    f.help = help_;
    f.type = prometheus::MetricType::Counter;
    prometheus::ClientMetric m;
    m.counter.value = read_();
    f.metric.push_back(std::move(m));
    return {std::move(f)};
  }

 private:
  std::string name_, help_;
  std::function<double()> read_;
};
}  // namespace

std::shared_ptr<prometheus::Collectable> CounterCollector(std::string name, std::string help,
                                                          std::function<double()> read) {
  return std::make_shared<ReadCounter>(std::move(name), std::move(help), std::move(read));
}

std::vector<double> DurationBuckets() {
  // Steps of 1, 1.5, 2, 3, 5 and 7 per decade from 1 ms to 60 s: at the round times of these
  // machines (10 to 100 ms) neighbouring buckets are 30-50 % apart, fine enough to tell a
  // straggler from its neighbours.
  std::vector<double> b;
  for (double decade = 0.001; decade < 100; decade *= 10)
    for (double m : {1.0, 1.5, 2.0, 3.0, 5.0, 7.0})
      if (decade * m <= 60) b.push_back(decade * m);
  return b;
}

prometheus::Family<prometheus::Gauge>& MakeGaugeFamily(prometheus::Registry& r, const std::string& name,
                                                       const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(r);
}
prometheus::Gauge& MakeGauge(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return MakeGaugeFamily(r, name, help).Add({});
}
prometheus::Family<prometheus::Counter>& MakeCounterFamily(prometheus::Registry& r, const std::string& name,
                                                           const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(r);
}
prometheus::Counter& MakeCounter(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return MakeCounterFamily(r, name, help).Add({});
}
prometheus::Histogram& MakeHistogram(prometheus::Registry& r, const std::string& name, const std::string& help) {
  return prometheus::BuildHistogram().Name(name).Help(help).Register(r).Add({}, DurationBuckets());
}

}  // namespace gut::services

// link_emulator: makes a loopback TCP link behave like a slower, longer one (the kernel here has
// no netem), for measuring gut's rounds on edge-like links (issue 23).
//
//   link_emulator --listen 127.0.0.1:PORT --to 127.0.0.1:PORT [--delay-ms D] [--rate-mbit R]
//   link_emulator --self-test [--delay-ms D] [--rate-mbit R] [--bytes N]
//
// Every connection accepted on --listen is relayed to --to. Each direction is its own link: a
// chunk read at time t leaves the bottleneck at max(t, when the previous chunk left) + its
// transmission time (bytes x 8 / rate) and is delivered D ms later; order is kept and nothing is
// lost. The queue in front of the bottleneck is bounded (bandwidth-delay product + 1 MiB), so a
// sender that outpaces the link is slowed by TCP's own flow control, as on a real link.
// Put one in front of each agent's peer port and give the agent `--advertise` with the
// emulator's address: every message to that agent then crosses the emulated link.
//
// --self-test measures the emulator against its own settings, side by side with loopback: a
// 1-byte ping-pong (round trip: expected 2 D) and a bulk transfer of N bytes one way (expected
// N x 8 / R + D), and exits 1 if either is off by more than 15 % (+ 2 ms).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

namespace {

using Clock = std::chrono::steady_clock;

struct Link {
  double delay_s = 0;
  double rate_bps = 0;  // 0: unlimited
};

int Listen(const std::string& host, int port, int* bound) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 || bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      listen(fd, 64) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *bound = ntohs(a.sin_port);
  return fd;
}

int Connect(const std::string& host, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &a.sin_addr) != 1 || connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

bool SendAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0) return false;
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

// One direction: a reader stamps chunks, a writer delivers each when the emulated link would.
class Pipe {
 public:
  Pipe(int from, int to, Link link) : from_(from), to_(to), link_(link) {
    limit_ = static_cast<size_t>(link.rate_bps / 8 * link.delay_s) + (1 << 20);
  }
  void Run() {
    std::thread writer([this] { Write(); });
    Read();
    writer.join();
  }

 private:
  struct Chunk {
    Clock::time_point deliver;
    std::string bytes;  // empty: end of stream
  };
  void Read() {
    std::vector<char> buf(64 << 10);
    Clock::time_point free = Clock::now();  // when the bottleneck is free again
    for (;;) {
      const ssize_t n = recv(from_, buf.data(), buf.size(), 0);
      const auto now = Clock::now();
      std::unique_lock<std::mutex> l(mu_);
      if (n <= 0) {
        q_.push_back({now + Seconds(link_.delay_s), ""});
        cv_.notify_all();
        return;
      }
      cv_.wait(l, [&] { return queued_ < limit_ || broken_; });
      if (broken_) return;
      const double tx = link_.rate_bps > 0 ? n * 8.0 / link_.rate_bps : 0;
      free = std::max(free, now) + Seconds(tx);
      q_.push_back({free + Seconds(link_.delay_s), std::string(buf.data(), static_cast<size_t>(n))});
      queued_ += static_cast<size_t>(n);
      cv_.notify_all();
    }
  }
  void Write() {
    for (;;) {
      Chunk c;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return !q_.empty(); });
        c = std::move(q_.front());
        q_.pop_front();
        queued_ -= c.bytes.size();
        cv_.notify_all();
      }
      std::this_thread::sleep_until(c.deliver);
      if (c.bytes.empty()) {
        shutdown(to_, SHUT_WR);
        return;
      }
      if (!SendAll(to_, c.bytes.data(), c.bytes.size())) {
        std::lock_guard<std::mutex> l(mu_);
        broken_ = true;
        shutdown(from_, SHUT_RD);  // the reader sees the end and stops
        cv_.notify_all();
        return;
      }
    }
  }
  static Clock::duration Seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  const int from_, to_;
  const Link link_;
  size_t limit_;
  std::mutex mu_;  // guards q_, queued_, broken_
  std::condition_variable cv_;
  std::deque<Chunk> q_;
  size_t queued_ = 0;
  bool broken_ = false;
};

// Relays every connection accepted on `listen_fd` to host:port through two emulated links.
void Serve(int listen_fd, const std::string& host, int port, Link link) {
  for (;;) {
    const int client = accept(listen_fd, nullptr, nullptr);
    if (client < 0) return;
    std::thread([client, host, port, link] {
      const int one = 1;
      setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      const int upstream = Connect(host, port);
      if (upstream < 0) {
        close(client);
        return;
      }
      Pipe up(client, upstream, link), down(upstream, client, link);
      std::thread t([&] { up.Run(); });
      down.Run();
      t.join();
      close(client);
      close(upstream);
    }).detach();
  }
}

bool SplitHostPort(const std::string& s, std::string* host, int* port) {
  const size_t c = s.rfind(':');
  if (c == std::string::npos) return false;
  *host = s.substr(0, c);
  try {
    *port = std::stoi(s.substr(c + 1));
  } catch (...) {
    return false;
  }
  return *port > 0 && *port < 65536;
}

// Echo (ping-pong) or sink (bulk) server on loopback; returns its port.
int TestServer(bool echo) {
  int port = 0;
  const int fd = Listen("127.0.0.1", 0, &port);
  std::thread([fd, echo] {
    for (;;) {
      const int c = accept(fd, nullptr, nullptr);
      if (c < 0) return;
      std::thread([c, echo] {
        const int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        std::vector<char> buf(64 << 10);
        for (ssize_t n; (n = recv(c, buf.data(), buf.size(), 0)) > 0;) {
          if (echo && !SendAll(c, buf.data(), static_cast<size_t>(n))) break;
        }
        if (!echo) (void)!send(c, "k", 1, MSG_NOSIGNAL);  // all received
        close(c);
      }).detach();
    }
  }).detach();
  return port;
}

struct Measured {
  double rtt_s, bulk_s;
};

Measured Measure(int echo_port, int sink_port, size_t bytes) {
  Measured m{};
  const int e = Connect("127.0.0.1", echo_port);
  std::vector<double> rtts;
  char b = 'x';
  for (int k = 0; k < 21; ++k) {
    const auto t0 = Clock::now();
    SendAll(e, &b, 1);
    if (recv(e, &b, 1, MSG_WAITALL) != 1) break;
    rtts.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  close(e);
  std::sort(rtts.begin(), rtts.end());
  m.rtt_s = rtts.empty() ? -1 : rtts[rtts.size() / 2];
  const int s = Connect("127.0.0.1", sink_port);
  const std::string block(64 << 10, 'y');
  const auto t0 = Clock::now();
  for (size_t sent = 0; sent < bytes; sent += block.size()) SendAll(s, block.data(), std::min(block.size(), bytes - sent));
  shutdown(s, SHUT_WR);
  char k = 0;
  m.bulk_s = recv(s, &k, 1, MSG_WAITALL) == 1 ? std::chrono::duration<double>(Clock::now() - t0).count() : -1;
  close(s);
  return m;
}

int SelfTest(Link link, size_t bytes) {
  const int echo = TestServer(true), sink = TestServer(false);
  int echo_via = 0, sink_via = 0;
  const int le = Listen("127.0.0.1", 0, &echo_via), ls = Listen("127.0.0.1", 0, &sink_via);
  std::thread([le, echo, link] { Serve(le, "127.0.0.1", echo, link); }).detach();
  std::thread([ls, sink, link] { Serve(ls, "127.0.0.1", sink, link); }).detach();
  const Measured direct = Measure(echo, sink, bytes), via = Measure(echo_via, sink_via, bytes);
  const double want_rtt = 2 * link.delay_s;
  const double want_bulk = (link.rate_bps > 0 ? bytes * 8.0 / link.rate_bps : 0) + link.delay_s;
  auto ok = [](double got, double want) { return got >= 0 && std::abs(got - want) <= 0.15 * want + 0.002; };
  std::printf("| | loopback | emulated | expected |\n|---|---|---|---|\n");
  std::printf("| ping-pong round trip (ms, median of 21) | %.3f | %.3f | %.3f |\n", 1e3 * direct.rtt_s, 1e3 * via.rtt_s,
              1e3 * want_rtt);
  std::printf("| bulk %zu bytes (ms) | %.1f | %.1f | %.1f |\n", bytes, 1e3 * direct.bulk_s, 1e3 * via.bulk_s,
              1e3 * want_bulk);
  std::printf("| bulk rate (Mbit/s) | %.0f | %.1f | %.1f |\n", bytes * 8e-6 / direct.bulk_s,
              bytes * 8e-6 / (via.bulk_s - link.delay_s), link.rate_bps * 1e-6);
  const bool good = ok(via.rtt_s, want_rtt) && ok(via.bulk_s, want_bulk);
  std::printf("%s\n", good ? "self-test: the emulated link matches its settings within 15 %"
                           : "self-test: FAILED: the emulated link is off its settings by more than 15 %");
  return good ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"link_emulator: a TCP relay with one-way delay and a rate limit per direction"};
  std::string listen_at, to;
  double delay_ms = 0, rate_mbit = 0;
  bool self_test = false;
  size_t bytes = 4 << 20;
  app.add_option("--listen", listen_at, "HOST:PORT to accept connections on");
  app.add_option("--to", to, "HOST:PORT to relay them to");
  app.add_option("--delay-ms", delay_ms, "one-way delay per direction")->check(CLI::NonNegativeNumber);
  app.add_option("--rate-mbit", rate_mbit, "rate per direction (0: unlimited)")->check(CLI::NonNegativeNumber);
  app.add_flag("--self-test", self_test, "measure the emulator against its settings and exit");
  app.add_option("--bytes", bytes, "bulk size for --self-test")->check(CLI::PositiveNumber);
  CLI11_PARSE(app, argc, argv);
  const Link link{delay_ms / 1e3, rate_mbit * 1e6};
  if (self_test) return SelfTest(link, bytes);
  std::string lhost, thost;
  int lport = 0, tport = 0, bound = 0;
  if (!SplitHostPort(listen_at, &lhost, &lport) || !SplitHostPort(to, &thost, &tport)) {
    std::fprintf(stderr, "link_emulator: --listen and --to need HOST:PORT (got '%s' and '%s')\n", listen_at.c_str(),
                 to.c_str());
    return 2;
  }
  const int fd = Listen(lhost, lport, &bound);
  if (fd < 0) {
    std::fprintf(stderr, "link_emulator: cannot listen on %s: %s\n", listen_at.c_str(), std::strerror(errno));
    return 2;
  }
  std::fprintf(stderr, "link_emulator: %s:%d -> %s, %.1f ms one way, %s per direction\n", lhost.c_str(), bound,
               to.c_str(), delay_ms, rate_mbit > 0 ? (std::to_string(rate_mbit) + " Mbit/s").c_str() : "unlimited");
  Serve(fd, thost, tport, link);
  return 0;
}

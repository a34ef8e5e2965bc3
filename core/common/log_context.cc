#include "core/common/log_context.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <mutex>
#include <vector>

namespace gut::core {
namespace {

std::mutex g_mu;
std::string g_run_id;  // guarded by g_mu
std::atomic<int> g_rank{-1};
std::atomic<int64_t> g_epoch{-1};

// The event of the line the calling thread is logging (LogEvent), if any.
thread_local const char* t_event = nullptr;
thread_local const std::initializer_list<LogNumber>* t_numbers = nullptr;

void AppendText(const std::string& s, spdlog::memory_buf_t& dest) { dest.append(s.data(), s.data() + s.size()); }

void AppendNumber(double v, spdlog::memory_buf_t& dest) {
  if (!std::isfinite(v)) return AppendText("null", dest);
  char buf[32];
  const int n = std::snprintf(buf, sizeof(buf), "%.9g", v);
  dest.append(buf, buf + n);
}

}  // namespace

void SetLogRunId(const std::string& run_id) {
  std::lock_guard<std::mutex> l(g_mu);
  g_run_id = run_id;
}
void SetLogRank(int rank) { g_rank = rank; }
void SetLogEpoch(int64_t epoch) { g_epoch = epoch; }

void LogEvent(spdlog::level::level_enum level, const char* event, std::initializer_list<LogNumber> numbers,
              const std::string& msg) {
  t_event = event;
  t_numbers = &numbers;
  spdlog::log(level, "{}", msg);
  t_event = nullptr;
  t_numbers = nullptr;
}

void AppendJsonEscaped(const char* b, const char* e, spdlog::memory_buf_t& dest) {
  for (const char* p = b; p != e; ++p) {
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c == '"' || c == '\\') {
      dest.push_back('\\');
      dest.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      dest.append(buf, buf + 6);
    } else {
      dest.push_back(static_cast<char>(c));
    }
  }
}

void LogContextFlag::format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) {
  std::string run_id;
  {
    std::lock_guard<std::mutex> l(g_mu);
    run_id = g_run_id;
  }
  AppendText("\"run_id\":", dest);
  if (run_id.empty()) {
    AppendText("null", dest);
  } else {
    dest.push_back('"');
    AppendJsonEscaped(run_id.data(), run_id.data() + run_id.size(), dest);
    dest.push_back('"');
  }
  const int rank = g_rank.load();
  AppendText(rank < 0 ? ",\"rank\":null" : ",\"rank\":" + std::to_string(rank), dest);
  const int64_t epoch = g_epoch.load();
  AppendText(epoch < 0 ? ",\"epoch\":null" : ",\"epoch\":" + std::to_string(epoch), dest);
  AppendText(",\"event\":\"", dest);
  AppendText(t_event != nullptr ? t_event : "log", dest);  // events are literals of ours: no escaping
  dest.push_back('"');
  if (t_numbers != nullptr) {
    for (const LogNumber& n : *t_numbers) {
      AppendText(",\"", dest);
      AppendText(n.key, dest);
      AppendText("\":", dest);
      AppendNumber(n.value, dest);
    }
  }
  dest.push_back(',');
}

}  // namespace gut::core

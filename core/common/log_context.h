// What every JSON log line says besides its message (--log-format json, core/common/cli.h): the
// run id, the rank and the epoch of the process (set once they are known), and an event name with
// numbers for lines a log shipper wants to read without parsing text (the epoch line's loss,
// accuracy, rate, wait and ETA). The text format shows none of it: its message already does.
//
// Thread-safe: the context is process-wide; a line's event and numbers belong to the calling
// thread (spdlog formats synchronously in the thread that logs).
#ifndef GUT_CORE_COMMON_LOG_CONTEXT_H_
#define GUT_CORE_COMMON_LOG_CONTEXT_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>

#include <spdlog/pattern_formatter.h>
#include <spdlog/spdlog.h>

namespace gut::core {

void SetLogRunId(const std::string& run_id);
void SetLogRank(int rank);      // -1: none
void SetLogEpoch(int64_t epoch);  // the last epoch this process completed (-1: none)

struct LogNumber {
  const char* key;
  double value;  // NaN and infinity are written as null
};

// Logs `msg` at `level` as event `event` with `numbers` (JSON fields next to msg).
void LogEvent(spdlog::level::level_enum level, const char* event, std::initializer_list<LogNumber> numbers,
              const std::string& msg);

// %X for the JSON pattern: "run_id":…,"rank":…,"epoch":…,"event":… and the line's numbers, each
// followed by a comma. A line logged without LogEvent is the event "log".
class LogContextFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& m, const std::tm& t, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<LogContextFlag>(); }
};

// JSON string escaping (quotes, backslashes, control characters) into `dest`.
void AppendJsonEscaped(const char* b, const char* e, spdlog::memory_buf_t& dest);

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_LOG_CONTEXT_H_

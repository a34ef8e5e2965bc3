#include "core/common/cli.h"

#include <atomic>
#include <iostream>
#include <mutex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>  // stderr_sink_mt
#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/common/log_context.h"
#include "core/config/manifest.h"

namespace gut::core {
namespace {

std::atomic<int64_t> g_round{-1};
std::mutex g_name_mu;
std::string g_name = "gut";  // guarded by g_name_mu

std::string Name() {
  std::lock_guard<std::mutex> l(g_name_mu);
  return g_name;
}

// %N: the process's name.
class NameFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string n = Name();
    dest.append(n.data(), n.data() + n.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<NameFlag>(); }
};

// %R: the current round ("-" before the first).
class RoundFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    const int64_t r = g_round.load();
    const std::string s = r < 0 ? "-" : std::to_string(r);
    dest.append(s.data(), s.data() + s.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<RoundFlag>(); }
};

// %J: the message, escaped for a JSON string; %Q: the name, escaped.
class JsonMessageFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& m, const std::tm&, spdlog::memory_buf_t& dest) override {
    AppendJsonEscaped(m.payload.data(), m.payload.data() + m.payload.size(), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonMessageFlag>(); }
};
class JsonNameFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string n = Name();
    AppendJsonEscaped(n.data(), n.data() + n.size(), dest);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<JsonNameFlag>(); }
};

// A flag error comes before logging is set up; under --log-format=json it is one JSON object too
// (the same fields as every log line, and "event"), so a log collector parses every line.
void PrintFlagError(const std::string& program, const std::string& text, int argc, char** argv) {
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    json = json || a == "--log-format=json" || (a == "--log-format" && i + 1 < argc && std::string(argv[i + 1]) == "json");
  }
  if (!json) {
    std::cerr << program << ": " << text << "\n";
    return;
  }
  const std::string base = program.substr(program.rfind('/') + 1);  // argv[0] may be a path
  spdlog::memory_buf_t name, msg;
  AppendJsonEscaped(base.data(), base.data() + base.size(), name);
  AppendJsonEscaped(text.data(), text.data() + text.size(), msg);
  std::cerr << R"({"ts":")" << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone())
            << R"(","level":"error","name":")" << std::string(name.data(), name.size())
            << R"(","round":"-","run_id":null,"rank":null,"epoch":null,"event":"flag_error","msg":")" << std::string(msg.data(), msg.size()) << "\"}\n";
}

}  // namespace

std::string VersionString(const std::string& program) {
  return absl::StrCat(program, " ", kVersion, " (revision ", kRevision, ")");
}

void AddCommonFlags(CLI::App& app, const std::string& program, LogOptions* log) {
  app.set_version_flag("--version", VersionString(program), "print the version and the git revision, then exit");
  app.add_option("--log-level", log->level, "trace, debug, info, warn, error")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  app.add_option("--log-format", log->format, "text, or json (one object per line)")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "json"}));
}

int Parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << app.help();
    return kExitDone;
  } catch (const CLI::CallForAllHelp&) {
    std::cout << app.help("", CLI::AppFormatMode::All);
    return kExitDone;
  } catch (const CLI::CallForVersion&) {
    std::cout << app.version() << "\n";
    return kExitDone;
  } catch (const CLI::ParseError& e) {
    // CLI11 reports a missing required flag before an unknown one; a typo in a flag name is the
    // likelier mistake, so name it first.
    std::string unknown;
    for (int i = 1; i < argc && dynamic_cast<const CLI::RequiredError*>(&e) != nullptr; ++i) {
      std::string a = argv[i];
      if (a.size() < 2 || a[0] != '-' || a == "--") continue;
      a = a.substr(0, a.find('='));
      if (app.get_option_no_throw(a) == nullptr) unknown += (unknown.empty() ? "" : ", ") + a;
    }
    PrintFlagError(app.get_name(),
                   absl::StrCat(unknown.empty() ? e.what() : "unknown flag " + unknown, " (--help lists the flags)"),
                   argc, argv);
    return kExitBadInput;
  }
  return -1;
}

void SetLogName(const std::string& name) {
  std::lock_guard<std::mutex> l(g_name_mu);
  g_name = name;
}

void SetLogRound(int64_t round) { g_round = round; }

void SetupLogging(const LogOptions& log, const std::string& name) {
  SetLogName(name);
  auto logger = std::make_shared<spdlog::logger>("gut", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  f->add_flag<NameFlag>('N').add_flag<RoundFlag>('R').add_flag<JsonMessageFlag>('J').add_flag<JsonNameFlag>('Q');
  f->add_flag<LogContextFlag>('X');
  if (log.format == "json") {
    f->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","name":"%Q","round":"%R",%X"msg":"%J"})");
  } else {
    f->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %N round=%R %v");
  }
  logger->set_formatter(std::move(f));
  logger->set_level(spdlog::level::from_str(log.level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
}

int LoadManifestForMain(const std::string& path, const std::vector<std::string>& overrides, bool print_config,
                        RunConfig* out) {
  auto config = LoadManifest(path, overrides);
  if (!config.ok()) {
    spdlog::error("invalid manifest: {}", std::string(config.status().message()));
    return kExitBadInput;
  }
  if (print_config) {
    std::cout << ToYaml(*config) << "\n";
    return kExitDone;
  }
  *out = std::move(*config);
  return -1;
}

}  // namespace gut::core

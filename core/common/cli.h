// What every gut binary does the same way: --version (the project version and the git revision it
// was built from), flag errors that exit with status 2, and one log format for all of them.
//
// Logs: UTC timestamps in RFC 3339, the level, the process's name (agent name, "coordinator",
// "gut-sim") and the current round, then the message; `--log-format json` writes one JSON object
// per line with the same fields (ts, level, name, round, msg) and run_id, rank, epoch, event and
// the event's numbers (core/common/log_context.h) for log shippers.
// Exit codes, documented in docs/operations/edge.md ("Restarts, failures and stopping"): 0 done
// (or stopped on request), 1 the run failed, 2 bad input (flags, manifest, data files, TLS files).
#ifndef GUT_CORE_COMMON_CLI_H_
#define GUT_CORE_COMMON_CLI_H_

#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace gut {
extern const char* const kVersion;
extern const char* const kRevision;
}  // namespace gut

namespace gut::core {

struct RunConfig;

constexpr int kExitDone = 0;
constexpr int kExitFailed = 1;
constexpr int kExitBadInput = 2;

// "gut-agentd 0.1.0 (revision 1a2b3c4d5e6f)".
std::string VersionString(const std::string& program);

// Adds --version, --log-level and --log-format to `app`.
struct LogOptions {
  std::string level = "info";
  std::string format = "text";  // text | json
};
void AddCommonFlags(CLI::App& app, const std::string& program, LogOptions* log);

// Parses; returns -1 to go on, else the exit code (0 after --help or --version, 2 for a bad flag,
// with the error printed).
int Parse(CLI::App& app, int argc, char** argv);

// For a binary's main (gut-sim, gut-coordinator): LoadManifest (core/config/manifest.h) into
// `out`. Returns -1 to go on, or the exit code: 2 after logging why the manifest is invalid, 0
// after printing the resolved YAML when `print_config` is set.
int LoadManifestForMain(const std::string& path, const std::vector<std::string>& overrides, bool print_config,
                        RunConfig* out);

// Sets up the process's logger; `name` is what the logs call this process.
void SetupLogging(const LogOptions& log, const std::string& name);
// The round the process is at (shown in every log line; -1: none yet).
void SetLogRound(int64_t round);
void SetLogName(const std::string& name);

}  // namespace gut::core

#endif  // GUT_CORE_COMMON_CLI_H_

// The agent's start-up (joining, loading the data set: seconds when many agents start at once)
// checks no stop flag. StartupWatch makes a SIGTERM during it still end the process within
// --stop-timeout-s: once a stop is requested and start-up has not ended in time, the process
// leaves before training, with nothing to save (the coordinator sees a lost agent, as after a
// crash).
#ifndef GUT_AGENT_STARTUP_WATCH_H_
#define GUT_AGENT_STARTUP_WATCH_H_

#include <atomic>
#include <thread>

namespace gut::agent {

class StartupWatch {
 public:
  StartupWatch(const std::atomic<bool>* stop, double stop_timeout_s);
  ~StartupWatch() { End(); }
  // Start-up is over (successfully or not): the watch stands down.
  void End();

 private:
  const std::atomic<bool>* stop_;
  std::atomic<bool> started_{false};
  std::thread thread_;
};

}  // namespace gut::agent

#endif  // GUT_AGENT_STARTUP_WATCH_H_

// CheckpointStore: one directory of full-state checkpoints of one agent (gut-agentd) or of a whole
// simulated run (gut-sim), named by the round after which they were taken.
//
// A file is written atomically (temporary file, fsync, rename, directory fsync) and carries a
// header (magic, format version, round, run id, parameter-layout hash), the state bundle and a
// CRC-32 over everything before it, so a torn or corrupt file is recognised and skipped: loading
// falls back to the previous checkpoint. Retention: the newest two scheduled checkpoints
// (checkpoint.every_rounds) and the newest unscheduled one (taken on a stop); older files are
// removed after a new one is durable.
//
// Not thread-safe: one thread owns a store.
#ifndef GUT_CORE_CHECKPOINT_CHECKPOINT_STORE_H_
#define GUT_CORE_CHECKPOINT_CHECKPOINT_STORE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/checkpoint/state_bundle.h"

namespace gut::core {

struct CheckpointIdentity {
  std::string run_id;        // checkpoints of another run are ignored
  uint64_t layout_hash = 0;  // of the model's parameters; another model's checkpoints are refused
};

struct LoadedCheckpoint {
  int64_t round = 0;
  std::string run_id;
  StateBundle state;
};

class CheckpointStore {
 public:
  // Creates `dir` if needed. Errors name the directory.
  static absl::StatusOr<CheckpointStore> Open(std::string dir, CheckpointIdentity identity);

  // Writes the state after `round` rounds. `scheduled` (a checkpoint.every_rounds multiple or the
  // start) decides how long the file is kept.
  absl::Status Write(int64_t round, const StateBundle& state, bool scheduled);

  // Rounds of this run's readable checkpoints, newest first. Damaged files and files of another
  // run or model are left out (and logged by Load, not here): this is what the agent announces.
  std::vector<int64_t> Rounds() const;

  // The checkpoint of `round`, verified; DATA_LOSS naming the file if it is damaged.
  absl::StatusOr<LoadedCheckpoint> Load(int64_t round) const;
  // The newest checkpoint that verifies, skipping damaged ones (each named in `skipped`);
  // NOT_FOUND if there is none.
  absl::StatusOr<LoadedCheckpoint> LoadNewest(std::vector<std::string>* skipped = nullptr) const;

  // The run of the newest checkpoint that verifies (whatever this store's identity says) and the
  // rounds held for that run, newest first: what a restarted agent tells the coordinator. Each
  // file left out as unreadable or damaged is named with the reason in `skipped`.
  std::pair<std::string, std::vector<int64_t>> Inventory(std::vector<std::string>* skipped = nullptr) const;

  // Removes every checkpoint after `round` (a rollback abandons them).
  void DiscardAfter(int64_t round);

  // Retention keeps the checkpoint of `round` as well (0: nothing extra), until pinned otherwise:
  // the coordinator may order a restore of it (RunCommand.hold_round). Any thread.
  void Pin(int64_t round) { pinned_->store(round); }
  int64_t pinned() const { return pinned_->load(); }

  const std::string& dir() const { return dir_; }

 private:
  CheckpointStore(std::string dir, CheckpointIdentity identity)
      : dir_(std::move(dir)), id_(std::move(identity)) {}
  struct Entry {
    int64_t round;
    bool scheduled;
    std::string path;
  };
  std::vector<Entry> List() const;  // every checkpoint-named file, newest first
  // Shared so that the store stays movable; set from the heartbeat thread, read by Write.
  std::shared_ptr<std::atomic<int64_t>> pinned_ = std::make_shared<std::atomic<int64_t>>(0);
  std::string PathFor(int64_t round, bool scheduled) const;
  absl::StatusOr<LoadedCheckpoint> Read(const Entry& e) const;

  std::string dir_;
  CheckpointIdentity id_;
};

// The file format, exposed for the fuzzer and the corruption tests.
std::string EncodeCheckpoint(int64_t round, const CheckpointIdentity& id, const StateBundle& state);
absl::StatusOr<LoadedCheckpoint> DecodeCheckpoint(absl::string_view bytes, const CheckpointIdentity& id);

}  // namespace gut::core

#endif  // GUT_CORE_CHECKPOINT_CHECKPOINT_STORE_H_

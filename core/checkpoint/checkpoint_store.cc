#include "core/checkpoint/checkpoint_store.h"

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/common/atomic_file.h"
#include "core/common/crc32.h"

namespace gut::core {
namespace {

namespace fs = std::filesystem;

constexpr char kMagic[8] = {'G', 'U', 'T', 'C', 'K', 'P', 'T', '\n'};
constexpr uint32_t kFormatVersion = 1;
constexpr char kPrefix[] = "ckpt-";
constexpr char kSuffix[] = ".gutckpt";
constexpr char kStopTag[] = "-stop";

uint32_t Crc(absl::string_view b) {
  return Crc32(0, b.data(), b.size());
}

template <typename U>
void Put(std::string* out, U v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}

}  // namespace

std::string EncodeCheckpoint(int64_t round, const CheckpointIdentity& id, const StateBundle& state) {
  std::string out(kMagic, sizeof(kMagic));
  Put<uint32_t>(&out, kFormatVersion);
  Put<int64_t>(&out, round);
  Put<uint64_t>(&out, id.layout_hash);
  Put<uint64_t>(&out, id.run_id.size());
  out += id.run_id;
  const std::string body = state.Serialize();
  Put<uint64_t>(&out, body.size());
  out += body;
  Put<uint32_t>(&out, Crc(out));
  return out;
}

absl::StatusOr<LoadedCheckpoint> DecodeCheckpoint(absl::string_view b, const CheckpointIdentity& id) {
  size_t pos = 0;
  auto take = [&](void* dst, size_t n) {
    if (b.size() - pos < n) return false;
    std::memcpy(dst, b.data() + pos, n);
    pos += n;
    return true;
  };
  auto bad = [&](const std::string& what) { return absl::DataLossError(absl::StrCat("checkpoint ", what)); };
  char magic[sizeof(kMagic)];
  if (!take(magic, sizeof(magic)) || std::memcmp(magic, kMagic, sizeof(kMagic)) != 0) {
    return bad("does not start with the checkpoint magic (not a gut checkpoint, or torn at its start)");
  }
  if (b.size() < sizeof(uint32_t) + pos) return bad("is truncated");
  uint32_t stored_crc = 0;
  std::memcpy(&stored_crc, b.data() + b.size() - sizeof(uint32_t), sizeof(uint32_t));
  if (Crc(b.substr(0, b.size() - sizeof(uint32_t))) != stored_crc) {
    return bad("fails its checksum (torn or corrupt)");
  }
  uint32_t version = 0;
  int64_t round = 0;
  uint64_t layout = 0, id_len = 0, body_len = 0;
  if (!take(&version, sizeof(version)) || !take(&round, sizeof(round)) || !take(&layout, sizeof(layout)) ||
      !take(&id_len, sizeof(id_len)) || id_len > b.size() - pos) {
    return bad("header is truncated");
  }
  if (version != kFormatVersion) return bad(absl::StrCat("has format version ", version, ", expected ", kFormatVersion));
  const std::string run_id(b.substr(pos, id_len));
  pos += id_len;
  if (!take(&body_len, sizeof(body_len)) || body_len != b.size() - pos - sizeof(uint32_t)) {
    return bad("body length disagrees with the file size");
  }
  if (!id.run_id.empty() && run_id != id.run_id) return absl::FailedPreconditionError("checkpoint belongs to another run");
  if (id.layout_hash != 0 && layout != id.layout_hash) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "checkpoint holds a model with parameter layout %016x, this run's is %016x", layout, id.layout_hash));
  }
  LoadedCheckpoint out;
  out.round = round;
  out.run_id = run_id;
  if (auto s = StateBundle::Parse(b.substr(pos, body_len), &out.state); !s.ok()) return s;
  return out;
}

absl::StatusOr<CheckpointStore> CheckpointStore::Open(std::string dir, CheckpointIdentity identity) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("cannot create checkpoint directory ", dir, ": ", ec.message()));
  return CheckpointStore(std::move(dir), std::move(identity));
}

std::string CheckpointStore::PathFor(int64_t round, bool scheduled) const {
  return absl::StrFormat("%s/%s%012d%s%s", dir_, kPrefix, round, scheduled ? "" : kStopTag, kSuffix);
}

std::vector<CheckpointStore::Entry> CheckpointStore::List() const {
  std::vector<Entry> out;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(dir_, ec)) {
    std::string name = f.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0 || name.size() <= sizeof(kSuffix) ||
        name.compare(name.size() - (sizeof(kSuffix) - 1), std::string::npos, kSuffix) != 0) {
      continue;
    }
    std::string mid = name.substr(sizeof(kPrefix) - 1, name.size() - (sizeof(kPrefix) - 1) - (sizeof(kSuffix) - 1));
    bool scheduled = true;
    if (mid.size() > sizeof(kStopTag) - 1 && mid.compare(mid.size() - (sizeof(kStopTag) - 1), std::string::npos, kStopTag) == 0) {
      scheduled = false;
      mid.resize(mid.size() - (sizeof(kStopTag) - 1));
    }
    int64_t round = 0;
    if (!absl::SimpleAtoi(mid, &round)) continue;
    out.push_back({round, scheduled, f.path().string()});
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    return a.round != b.round ? a.round > b.round : a.scheduled > b.scheduled;
  });
  return out;
}

absl::Status CheckpointStore::Write(int64_t round, const StateBundle& state, bool scheduled) {
  if (auto s = AtomicWrite(PathFor(round, scheduled), EncodeCheckpoint(round, id_, state)); !s.ok()) return s;
  // Retention, only once the new file is durable. A damaged file never counts as one of the kept
  // ones (it could not be restored), and goes.
  int scheduled_kept = 0;
  bool stop_kept = false;
  for (const auto& e : List()) {
    bool keep;
    if (e.round != round && !Read(e).ok()) {
      keep = false;
    } else if (e.scheduled && e.round > 0 && e.round == pinned_->load()) {
      keep = true;  // held for a restore the coordinator is preparing; not one of the two
    } else if (e.scheduled) {
      keep = ++scheduled_kept <= 2;
    } else {
      keep = !stop_kept && e.round >= round;  // a stop checkpoint older than the newest file is moot
      stop_kept = stop_kept || keep;
    }
    if (!keep) {
      std::error_code ec;
      fs::remove(e.path, ec);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadedCheckpoint> CheckpointStore::Read(const Entry& e) const {
  auto bytes = ReadWholeFile(e.path);
  if (!bytes.ok()) return bytes.status();
  auto c = DecodeCheckpoint(*bytes, id_);
  if (!c.ok()) return absl::Status(c.status().code(), absl::StrCat(e.path, ": ", c.status().message()));
  if (c->round != e.round) {
    return absl::DataLossError(absl::StrCat(e.path, ": holds round ", c->round, ", its name says ", e.round));
  }
  return c;
}

std::vector<int64_t> CheckpointStore::Rounds() const {
  std::vector<int64_t> out;
  for (const auto& e : List()) {
    if (!out.empty() && out.back() == e.round) continue;
    if (Read(e).ok()) out.push_back(e.round);
  }
  return out;
}

absl::StatusOr<LoadedCheckpoint> CheckpointStore::Load(int64_t round) const {
  absl::Status last = absl::NotFoundError(absl::StrCat("no checkpoint of round ", round, " in ", dir_));
  for (const auto& e : List()) {
    if (e.round != round) continue;
    auto c = Read(e);
    if (c.ok()) return c;
    last = c.status();
  }
  return last;
}

absl::StatusOr<LoadedCheckpoint> CheckpointStore::LoadNewest(std::vector<std::string>* skipped) const {
  for (const auto& e : List()) {
    auto c = Read(e);
    if (c.ok()) return c;
    if (skipped) skipped->push_back(std::string(c.status().message()));
  }
  return absl::NotFoundError(absl::StrCat("no usable checkpoint in ", dir_));
}

std::pair<std::string, std::vector<int64_t>> CheckpointStore::Inventory(std::vector<std::string>* skipped) const {
  std::pair<std::string, std::vector<int64_t>> out;
  const CheckpointIdentity any;
  bool found = false;
  auto skip = [&](const std::string& path, const std::string& why) {
    if (skipped != nullptr) skipped->push_back(absl::StrCat(path, ": ", why));
  };
  for (const auto& e : List()) {
    auto bytes = ReadWholeFile(e.path);
    if (!bytes.ok()) {
      skip(e.path, std::string(bytes.status().message()));
      continue;
    }
    auto c = DecodeCheckpoint(*bytes, any);
    if (!c.ok()) {
      skip(e.path, std::string(c.status().message()));
      continue;
    }
    if (c->round != e.round) {
      skip(e.path, absl::StrCat("holds round ", c->round, ", not the round its name says"));
      continue;
    }
    if (!found) {
      out.first = c->run_id;
      found = true;
    }
    if (c->run_id == out.first && (out.second.empty() || out.second.back() != e.round)) out.second.push_back(e.round);
  }
  return out;
}

void CheckpointStore::DiscardAfter(int64_t round) {
  for (const auto& e : List()) {
    if (e.round > round) {
      std::error_code ec;
      fs::remove(e.path, ec);
    }
  }
}

}  // namespace gut::core

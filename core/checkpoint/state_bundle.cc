#include "core/checkpoint/state_bundle.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace gut::core {
namespace {

template <typename E>
std::string Bytes(const E* p, size_t n) {
  return std::string(reinterpret_cast<const char*>(p), n * sizeof(E));
}

template <typename E>
void FromBytes(const std::string& b, std::vector<E>* v) {
  v->resize(b.size() / sizeof(E));
  if (!b.empty()) std::memcpy(v->data(), b.data(), b.size());
}

void PutU64(std::string* out, uint64_t v) { out->append(reinterpret_cast<const char*>(&v), sizeof(v)); }

}  // namespace

std::string StateBundle::Serialize() const {
  std::string out;
  PutU64(&out, items.size());
  for (const auto& [name, item] : items) {
    PutU64(&out, name.size());
    out += name;
    out.push_back(item.kind);
    PutU64(&out, item.bytes.size());
    out += item.bytes;
  }
  return out;
}

absl::Status StateBundle::Parse(absl::string_view bytes, StateBundle* out) {
  size_t pos = 0;
  auto u64 = [&](uint64_t* v) {
    if (bytes.size() - pos < sizeof(uint64_t)) return false;
    std::memcpy(v, bytes.data() + pos, sizeof(uint64_t));
    pos += sizeof(uint64_t);
    return true;
  };
  auto bad = [&](const char* what) {
    return absl::DataLossError(absl::StrCat("state bundle: ", what, " at byte ", pos, " of ", bytes.size()));
  };
  uint64_t count = 0;
  if (!u64(&count)) return bad("truncated item count");
  out->items.clear();
  for (uint64_t k = 0; k < count; ++k) {
    uint64_t len = 0;
    if (!u64(&len) || len > bytes.size() - pos) return bad("truncated name");
    std::string name(bytes.substr(pos, len));
    pos += len;
    if (pos >= bytes.size()) return bad("truncated item kind");
    Item item;
    item.kind = bytes[pos++];
    if (!u64(&len) || len > bytes.size() - pos) return bad("truncated item");
    item.bytes = std::string(bytes.substr(pos, len));
    pos += len;
    if (!out->items.emplace(std::move(name), std::move(item)).second) return bad("duplicate item");
  }
  if (pos != bytes.size()) return bad("trailing bytes");
  return absl::OkStatus();
}

// ---- visitor ---------------------------------------------------------------------------------
template <typename T>
std::string StateVisitor<T>::Key(absl::string_view name) const {
  if (prefix_.empty()) return std::string(name);
  return absl::StrCat(absl::StrJoin(prefix_, "/"), "/", name);
}

template <typename T>
const std::string* StateVisitor<T>::Find(const std::string& key, char kind, size_t elem) {
  if (!status_.ok()) return nullptr;
  auto it = in_->items.find(key);
  if (it == in_->items.end()) {
    status_ = absl::DataLossError(absl::StrCat("checkpoint state has no item '", key, "'"));
    return nullptr;
  }
  if (it->second.kind != kind || it->second.bytes.size() % elem != 0) {
    status_ = absl::DataLossError(absl::StrCat("checkpoint item '", key, "' has kind '", std::string(1, it->second.kind),
                                               "' and ", it->second.bytes.size(), " bytes; expected kind '",
                                               std::string(1, kind), "'"));
    return nullptr;
  }
  return &it->second.bytes;
}

template <typename T>
template <typename E>
void StateVisitor<T>::List(absl::string_view name, char kind, std::vector<E>* v) {
  if (out_ != nullptr) {
    out_->items[Key(name)] = {kind, Bytes(v->data(), v->size())};
  } else if (const std::string* b = Find(Key(name), kind, sizeof(E))) {
    FromBytes(*b, v);
  }
}

template <typename T>
template <typename E>
void StateVisitor<T>::One(absl::string_view name, char kind, E* v, const char* what) {
  if (out_ != nullptr) {
    out_->items[Key(name)] = {kind, Bytes(v, 1)};
    return;
  }
  const std::string key = Key(name);
  const std::string* b = Find(key, kind, sizeof(E));
  if (b == nullptr) return;
  if (b->size() != sizeof(E)) {
    status_ = absl::DataLossError(absl::StrCat("checkpoint item '", key, "' is not one ", what));
    return;
  }
  std::memcpy(v, b->data(), sizeof(E));
}

// A flag is one byte, 1 or 0; a loaded byte other than 0 reads as true (never copied into a bool).
template <typename T>
void StateVisitor<T>::Flag(absl::string_view name, bool* v) {
  char byte = *v ? '\1' : '\0';
  One(name, 'b', &byte, "flag");
  if (in_ != nullptr && status_.ok()) *v = byte != 0;
}

template <typename T>
void StateVisitor<T>::Text(absl::string_view name, std::string* v) {
  if (out_ != nullptr) {
    out_->items[Key(name)] = {'t', *v};
  } else if (const std::string* b = Find(Key(name), 't', 1)) {
    *v = *b;
  }
}

template <typename T>
bool StateVisitor<T>::Has(absl::string_view name) const {
  return in_ == nullptr || in_->items.count(Key(name)) > 0;
}

template <typename T>
void StateVisitor<T>::Reject(absl::string_view name, absl::string_view why) {
  if (status_.ok()) status_ = absl::DataLossError(absl::StrCat("checkpoint item '", Key(name), "': ", why));
}

template class StateVisitor<float>;
template class StateVisitor<double>;

}  // namespace gut::core

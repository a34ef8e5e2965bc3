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

template <typename T>
constexpr char KindOf() {
  return sizeof(T) == 4 ? 'f' : 'd';
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

// ---- saver -----------------------------------------------------------------------------------
template <typename T>
std::string StateSaver<T>::Key(absl::string_view name) const {
  if (prefix_.empty()) return std::string(name);
  return absl::StrCat(absl::StrJoin(prefix_, "/"), "/", name);
}
template <typename T>
void StateSaver<T>::Values(absl::string_view name, std::vector<T>* v) {
  out_->items[Key(name)] = {KindOf<T>(), Bytes(v->data(), v->size())};
}
template <typename T>
void StateSaver<T>::Value(absl::string_view name, T* v) {
  out_->items[Key(name)] = {KindOf<T>(), Bytes(v, 1)};
}
template <typename T>
void StateSaver<T>::Double(absl::string_view name, double* v) {
  out_->items[Key(name)] = {'d', Bytes(v, 1)};
}
template <typename T>
void StateSaver<T>::Doubles(absl::string_view name, std::vector<double>* v) {
  out_->items[Key(name)] = {'d', Bytes(v->data(), v->size())};
}
template <typename T>
void StateSaver<T>::Integers(absl::string_view name, std::vector<int64_t>* v) {
  out_->items[Key(name)] = {'i', Bytes(v->data(), v->size())};
}
template <typename T>
void StateSaver<T>::Integer(absl::string_view name, int64_t* v) {
  out_->items[Key(name)] = {'i', Bytes(v, 1)};
}
template <typename T>
void StateSaver<T>::Flag(absl::string_view name, bool* v) {
  out_->items[Key(name)] = {'b', std::string(1, *v ? '\1' : '\0')};
}
template <typename T>
void StateSaver<T>::Text(absl::string_view name, std::string* v) {
  out_->items[Key(name)] = {'t', *v};
}
template <typename T>
void StateSaver<T>::Push(absl::string_view prefix) {
  prefix_.emplace_back(prefix);
}
template <typename T>
void StateSaver<T>::Pop() {
  if (!prefix_.empty()) prefix_.pop_back();
}

// ---- loader ----------------------------------------------------------------------------------
template <typename T>
std::string StateLoader<T>::Key(absl::string_view name) const {
  if (prefix_.empty()) return std::string(name);
  return absl::StrCat(absl::StrJoin(prefix_, "/"), "/", name);
}
template <typename T>
const std::string* StateLoader<T>::Find(absl::string_view name, char kind, size_t elem) {
  if (!status_.ok()) return nullptr;
  const std::string key = Key(name);
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
void StateLoader<T>::Values(absl::string_view name, std::vector<T>* v) {
  if (const auto* b = Find(name, KindOf<T>(), sizeof(T))) FromBytes(*b, v);
}
template <typename T>
void StateLoader<T>::Value(absl::string_view name, T* v) {
  const auto* b = Find(name, KindOf<T>(), sizeof(T));
  if (b == nullptr) return;
  if (b->size() != sizeof(T)) {
    status_ = absl::DataLossError(absl::StrCat("checkpoint item '", Key(name), "' is not one value"));
    return;
  }
  std::memcpy(v, b->data(), sizeof(T));
}
template <typename T>
void StateLoader<T>::Double(absl::string_view name, double* v) {
  const auto* b = Find(name, 'd', sizeof(double));
  if (b == nullptr) return;
  if (b->size() != sizeof(double)) {
    status_ = absl::DataLossError(absl::StrCat("checkpoint item '", Key(name), "' is not one value"));
    return;
  }
  std::memcpy(v, b->data(), sizeof(double));
}
template <typename T>
void StateLoader<T>::Doubles(absl::string_view name, std::vector<double>* v) {
  if (const auto* b = Find(name, 'd', sizeof(double))) FromBytes(*b, v);
}
template <typename T>
void StateLoader<T>::Integers(absl::string_view name, std::vector<int64_t>* v) {
  if (const auto* b = Find(name, 'i', sizeof(int64_t))) FromBytes(*b, v);
}
template <typename T>
void StateLoader<T>::Integer(absl::string_view name, int64_t* v) {
  const auto* b = Find(name, 'i', sizeof(int64_t));
  if (b == nullptr) return;
  if (b->size() != sizeof(int64_t)) {
    status_ = absl::DataLossError(absl::StrCat("checkpoint item '", Key(name), "' is not one integer"));
    return;
  }
  std::memcpy(v, b->data(), sizeof(int64_t));
}
template <typename T>
void StateLoader<T>::Flag(absl::string_view name, bool* v) {
  const auto* b = Find(name, 'b', 1);
  if (b == nullptr) return;
  if (b->size() != 1) {
    status_ = absl::DataLossError(absl::StrCat("checkpoint item '", Key(name), "' is not one flag"));
    return;
  }
  *v = (*b)[0] != 0;
}
template <typename T>
void StateLoader<T>::Text(absl::string_view name, std::string* v) {
  if (const auto* b = Find(name, 't', 1)) *v = *b;
}
template <typename T>
void StateLoader<T>::Push(absl::string_view prefix) {
  prefix_.emplace_back(prefix);
}
template <typename T>
void StateLoader<T>::Pop() {
  if (!prefix_.empty()) prefix_.pop_back();
}

template class StateSaver<float>;
template class StateSaver<double>;
template class StateLoader<float>;
template class StateLoader<double>;

}  // namespace gut::core

// How a component hands over the state its future depends on, for checkpoints and rollback.
//
// A component (an Algorithm, the epoch driver's bookkeeping, a trainer's position) implements one
// function that calls a StateVisitor once per item, with a stable name, in a fixed order. The same
// function serves saving and loading: a StateSaver copies every item into a StateBundle; a
// StateLoader writes the bundle's items back. A variable-length list is written as its length
// (Integer) followed by its items, so that the loading side can resize before the items arrive:
//
//   int64_t k = relays_.size();
//   v->Integer("relays", &k);   // saving: k is written; loading: k is read
//   relays_.resize(k);
//   for (int64_t j = 0; j < k; ++j) v->Values(absl::StrCat("relay/", j), &relays_[j]);
//
// A loader never crashes on a bad bundle: a missing item, a type or element-size mismatch is
// recorded, and status() reports the first one (naming the item); the component must then be
// discarded. Bundles are plain name -> bytes maps; core/checkpoint/checkpoint_store.h puts them in
// files with a checksum.
#ifndef GUT_CORE_CHECKPOINT_STATE_BUNDLE_H_
#define GUT_CORE_CHECKPOINT_STATE_BUNDLE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace gut::core {

// Named, typed byte strings. The type tag is the element kind and size, so a float state is never
// loaded into a double component.
struct StateBundle {
  struct Item {
    char kind = 0;  // 'f' float, 'd' double, 'i' int64, 'b' bool, 't' text
    std::string bytes;
  };
  std::map<std::string, Item> items;

  // Serialised form (length-prefixed records), and back. Parse errors name the offset.
  std::string Serialize() const;
  static absl::Status Parse(absl::string_view bytes, StateBundle* out);
};

// The visitor a component's state function is called with. One class does both directions, so the
// typed items are coded once: a StateSaver stores each item into a bundle, a StateLoader reads it
// back (a mismatch is recorded in status(), the target left as it was).
template <typename T>
class StateVisitor {
 public:
  void Values(absl::string_view name, std::vector<T>* v) { List(name, KindOf(), v); }
  void Value(absl::string_view name, T* v) { One(name, KindOf(), v, "value"); }
  void Double(absl::string_view name, double* v) { One(name, 'd', v, "value"); }
  void Doubles(absl::string_view name, std::vector<double>* v) { List(name, 'd', v); }
  void Integers(absl::string_view name, std::vector<int64_t>* v) { List(name, 'i', v); }
  void Integer(absl::string_view name, int64_t* v) { One(name, 'i', v, "integer"); }
  void Flag(absl::string_view name, bool* v);
  void Text(absl::string_view name, std::string* v);
  // Loading: whether the bundle holds item `name` (an item added in a later version is optional:
  // a checkpoint written before it lacks it). Saving: true.
  bool Has(absl::string_view name) const;
  // Items below this call are named "<prefix>/<name>" until the matching Pop.
  void Push(absl::string_view prefix) { prefix_.emplace_back(prefix); }
  void Pop() {
    if (!prefix_.empty()) prefix_.pop_back();
  }
  // OK, or the first problem a loader met (a missing item, a type mismatch, a bad length).
  const absl::Status& status() const { return status_; }
  bool loading() const { return in_ != nullptr; }
  // A problem the component found in item `name` it has just loaded (a size that does not fit its
  // shape); like the loader's own, the first one is kept.
  void Reject(absl::string_view name, absl::string_view why);

 protected:
  // Exactly one of the two is set: saving into `out`, or loading from `in`.
  StateVisitor(StateBundle* out, const StateBundle* in) : out_(out), in_(in) {}

 private:
  static constexpr char KindOf() { return sizeof(T) == 4 ? 'f' : 'd'; }
  std::string Key(absl::string_view name) const;
  // Loading: the item's bytes if present with this kind and a length that is a multiple of `elem`.
  const std::string* Find(const std::string& key, char kind, size_t elem);
  template <typename E>
  void List(absl::string_view name, char kind, std::vector<E>* v);
  template <typename E>
  void One(absl::string_view name, char kind, E* v, const char* what);

  StateBundle* out_;
  const StateBundle* in_;
  std::vector<std::string> prefix_;
  absl::Status status_;
};

template <typename T>
class StateSaver final : public StateVisitor<T> {
 public:
  explicit StateSaver(StateBundle* out) : StateVisitor<T>(out, nullptr) {}
};

template <typename T>
class StateLoader final : public StateVisitor<T> {
 public:
  explicit StateLoader(const StateBundle* in) : StateVisitor<T>(nullptr, in) {}
};

extern template class StateVisitor<float>;
extern template class StateVisitor<double>;

}  // namespace gut::core

#endif  // GUT_CORE_CHECKPOINT_STATE_BUNDLE_H_

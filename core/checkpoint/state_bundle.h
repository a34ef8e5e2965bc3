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

template <typename T>
class StateVisitor {
 public:
  virtual ~StateVisitor() = default;
  virtual void Values(absl::string_view name, std::vector<T>* v) = 0;
  virtual void Value(absl::string_view name, T* v) = 0;
  virtual void Double(absl::string_view name, double* v) = 0;
  virtual void Doubles(absl::string_view name, std::vector<double>* v) = 0;
  virtual void Integers(absl::string_view name, std::vector<int64_t>* v) = 0;
  virtual void Integer(absl::string_view name, int64_t* v) = 0;
  virtual void Flag(absl::string_view name, bool* v) = 0;
  virtual void Text(absl::string_view name, std::string* v) = 0;
  // Items below this call are named "<prefix>/<name>" until the matching Pop.
  virtual void Push(absl::string_view prefix) = 0;
  virtual void Pop() = 0;
};

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

template <typename T>
class StateSaver final : public StateVisitor<T> {
 public:
  explicit StateSaver(StateBundle* out) : out_(out) {}
  void Values(absl::string_view name, std::vector<T>* v) override;
  void Value(absl::string_view name, T* v) override;
  void Double(absl::string_view name, double* v) override;
  void Doubles(absl::string_view name, std::vector<double>* v) override;
  void Integers(absl::string_view name, std::vector<int64_t>* v) override;
  void Integer(absl::string_view name, int64_t* v) override;
  void Flag(absl::string_view name, bool* v) override;
  void Text(absl::string_view name, std::string* v) override;
  void Push(absl::string_view prefix) override;
  void Pop() override;

 private:
  std::string Key(absl::string_view name) const;
  StateBundle* out_;
  std::vector<std::string> prefix_;
};

template <typename T>
class StateLoader final : public StateVisitor<T> {
 public:
  explicit StateLoader(const StateBundle* in) : in_(in) {}
  void Values(absl::string_view name, std::vector<T>* v) override;
  void Value(absl::string_view name, T* v) override;
  void Double(absl::string_view name, double* v) override;
  void Doubles(absl::string_view name, std::vector<double>* v) override;
  void Integers(absl::string_view name, std::vector<int64_t>* v) override;
  void Integer(absl::string_view name, int64_t* v) override;
  void Flag(absl::string_view name, bool* v) override;
  void Text(absl::string_view name, std::string* v) override;
  void Push(absl::string_view prefix) override;
  void Pop() override;
  // OK, or the first problem met (a missing item, a type mismatch, a bad length).
  const absl::Status& status() const { return status_; }

 private:
  std::string Key(absl::string_view name) const;
  // The item's bytes if present with this kind and a length that is a multiple of `elem`.
  const std::string* Find(absl::string_view name, char kind, size_t elem);
  const StateBundle* in_;
  std::vector<std::string> prefix_;
  absl::Status status_;
};

extern template class StateSaver<float>;
extern template class StateSaver<double>;
extern template class StateLoader<float>;
extern template class StateLoader<double>;

}  // namespace gut::core

#endif  // GUT_CORE_CHECKPOINT_STATE_BUNDLE_H_

#include "services/frame_assembly.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/common/crc32.h"

namespace gut::services {

using gut::v1::PeerFrame;

uint32_t Crc32(absl::string_view s) {
  return core::Crc32(0, s.data(), s.size());
}

std::vector<FramePtr> CutIntoFrames(const RoundHeader& h, std::string* bytes, size_t chunk) {
  const size_t total = bytes->size();
  const uint32_t count = static_cast<uint32_t>(std::max<size_t>(1, (total + chunk - 1) / chunk));
  std::vector<FramePtr> frames;
  frames.reserve(count);
  for (uint32_t c = 0; c < count; ++c) {
    auto f = std::make_shared<PeerFrame>();
    auto* r = f->mutable_round();
    r->set_round(h.round);
    r->set_slot(h.slot);
    r->set_sequence(h.sequence);
    r->set_chunk_index(c);
    r->set_chunk_count(count);
    r->set_byte_offset(static_cast<uint64_t>(c) * chunk);
    r->set_total_bytes(total);
    r->set_elements(h.elements);
    r->set_codec(h.codec);
    r->set_framing(h.framing);
    if (count == 1) {
      r->mutable_payload()->swap(*bytes);
    } else {
      r->set_payload(bytes->substr(static_cast<size_t>(c) * chunk, std::min(chunk, total - static_cast<size_t>(c) * chunk)));
    }
    r->set_checksum(Crc32(r->payload()));
    frames.push_back(std::move(f));
  }
  return frames;
}

MessageAssembler::Verdict MessageAssembler::Refuse(Reject why, std::string detail) const {
  Verdict v;
  v.outcome = Outcome::kRefused;
  v.reason = why;
  v.detail = std::move(detail);
  return v;
}

MessageAssembler::Verdict MessageAssembler::Add(gut::v1::Round* r, int64_t last_taken, absl::Time now) {
  const auto where = [&] { return absl::StrCat("round ", r->round(), " slot ", r->slot(), ": "); };
  if (r->codec() != limits_.codec || r->framing() != limits_.framing) {
    return Refuse(Reject::kCodec, absl::StrCat(where(), "codec or framing differs from the run's"));
  }
  if (r->slot() < 0 || r->slot() >= limits_.max_slots) return Refuse(Reject::kProtocol, absl::StrCat(where(), "slot out of range"));
  if (r->total_bytes() > limits_.max_message_bytes) {
    return Refuse(Reject::kSize, absl::StrCat(where(), "message of ", r->total_bytes(), " bytes exceeds the bound of ",
                                              limits_.max_message_bytes));
  }
  const uint64_t chunk = limits_.chunk_bytes;
  if (r->chunk_count() == 0 || r->chunk_index() >= r->chunk_count() ||
      r->chunk_count() > r->total_bytes() / chunk + 1 || r->byte_offset() > r->total_bytes() ||
      r->payload().size() > r->total_bytes() - r->byte_offset() ||
      r->byte_offset() != static_cast<uint64_t>(r->chunk_index()) * chunk) {
    return Refuse(Reject::kSize, absl::StrCat(where(), "chunk ", r->chunk_index(), "/", r->chunk_count(), " at byte ",
                                              r->byte_offset(), " with ", r->payload().size(),
                                              " bytes does not fit a message of ", r->total_bytes()));
  }
  if (Crc32(r->payload()) != r->checksum()) return Refuse(Reject::kChecksum, absl::StrCat(where(), "payload checksum mismatch"));
  const Key key{r->round(), r->slot()};
  Verdict v;
  if (r->round() <= last_taken) {
    v.outcome = Outcome::kStale;
    v.reason = Reject::kStale;
    return v;
  }
  if (ready_.count(key)) {
    v.outcome = Outcome::kDuplicateMessage;
    v.reason = Reject::kDuplicate;
    return v;
  }
  if (r->elements() > limits_.max_elements) {
    return Refuse(Reject::kSize, absl::StrCat(where(), r->elements(), " elements, more than the model's ", limits_.max_elements));
  }
  if (r->chunk_count() == 1 && r->payload().size() != r->total_bytes()) {
    return Refuse(Reject::kSize, absl::StrCat(where(), "a single chunk is not the whole message"));
  }
  if (r->chunk_count() > 1 && r->chunk_index() + 1 < r->chunk_count() && r->payload().size() != chunk) {
    return Refuse(Reject::kSize, absl::StrCat(where(), "a chunk other than the last is not ", chunk, " bytes"));
  }
  auto it = partial_.find(key);
  if (it == partial_.end()) {
    if (r->round() > last_taken + limits_.max_rounds_ahead) {
      return Refuse(Reject::kOverflow, absl::StrCat(where(), "more than ", limits_.max_rounds_ahead, " rounds ahead"));
    }
    if (buffered_messages() >= limits_.max_buffered_messages ||
        buffered_bytes_ + r->total_bytes() > limits_.max_buffered_bytes) {
      return Refuse(Reject::kOverflow, absl::StrCat(where(), "more than ", limits_.max_buffered_messages,
                                                    " messages or ", limits_.max_buffered_bytes, " bytes buffered ahead"));
    }
    it = partial_.emplace(key, Partial()).first;
    it->second.have.assign(r->chunk_count(), false);
    it->second.elements = r->elements();
    if (r->chunk_count() > 1) it->second.bytes.resize(r->total_bytes());
    buffered_bytes_ += r->total_bytes();
  }
  Partial& m = it->second;
  if (m.have.size() != r->chunk_count() || m.elements != r->elements() ||
      (r->chunk_count() > 1 && m.bytes.size() != r->total_bytes())) {
    return Refuse(Reject::kProtocol, absl::StrCat(where(), "chunks disagree on the message size"));
  }
  if (m.have[r->chunk_index()]) {
    v.outcome = Outcome::kDuplicateChunk;
    v.reason = Reject::kDuplicate;
    return v;
  }
  m.have[r->chunk_index()] = true;
  ++m.got;
  if (r->chunk_count() == 1) {
    m.bytes.swap(*r->mutable_payload());
  } else {
    std::copy(r->payload().begin(), r->payload().end(), m.bytes.begin() + static_cast<ptrdiff_t>(r->byte_offset()));
  }
  if (m.got < m.have.size()) return v;  // kPartial
  ready_.emplace(key, CompleteMessage{std::move(m.bytes), m.elements, now});
  partial_.erase(it);
  v.outcome = Outcome::kComplete;
  return v;
}

CompleteMessage MessageAssembler::Take(int64_t round, int slot) {
  auto it = ready_.find({round, slot});
  CompleteMessage out = std::move(it->second);
  ready_.erase(it);
  buffered_bytes_ -= std::min<uint64_t>(buffered_bytes_, out.bytes.size());
  for (auto p = partial_.begin(); p != partial_.end();) {
    if (p->first.second == slot && p->first.first <= round) {
      buffered_bytes_ -= std::min<uint64_t>(buffered_bytes_, p->second.bytes.size());
      p = partial_.erase(p);
    } else {
      ++p;
    }
  }
  return out;
}

void MessageAssembler::Clear() {
  partial_.clear();
  ready_.clear();
  buffered_bytes_ = 0;
}

}  // namespace gut::services

#include "services/peer_wire.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace gut::services {

gut::v1::Codec WireCodec(core::CodecKind k) {
  switch (k) {
    case core::CodecKind::kFp32: return gut::v1::CODEC_FP32;
    case core::CodecKind::kBf16: return gut::v1::CODEC_BF16;
    case core::CodecKind::kInt8: return gut::v1::CODEC_INT8;
    case core::CodecKind::kTopK: return gut::v1::CODEC_TOPK;
    case core::CodecKind::kRandK: return gut::v1::CODEC_RANDK;
    case core::CodecKind::kSign: return gut::v1::CODEC_SIGN;
    case core::CodecKind::kLowRank: return gut::v1::CODEC_LOWRANK;
    case core::CodecKind::kInt4: return gut::v1::CODEC_INT4;
    case core::CodecKind::kInt2: return gut::v1::CODEC_INT2;
  }
  return gut::v1::CODEC_UNSPECIFIED;
}

const char* RejectName(Reject r) {
  switch (r) {
    case Reject::kRunId: return "run_id";
    case Reject::kVersion: return "version";
    case Reject::kLayout: return "layout";
    case Reject::kCodec: return "codec";
    case Reject::kNotNeighbour: return "not_neighbour";
    case Reject::kIdentity: return "identity";
    case Reject::kGeneration: return "generation";
    case Reject::kProtocol: return "protocol";
    case Reject::kChecksum: return "checksum";
    case Reject::kSize: return "size";
    case Reject::kStale: return "stale";
    case Reject::kDuplicate: return "duplicate";
    case Reject::kOverflow: return "future_overflow";
    case Reject::kNotReady: return "not_ready";
    case Reject::kHelloTimeout: return "hello_timeout";
    case Reject::kTooManyPending: return "too_many_pending";
    case Reject::kNonFinite: return "non_finite";
    case Reject::kZeroMessage: return "zero";
    case Reject::kImplausible: return "implausible";
    case Reject::kNumerics: return "numerics";
    case Reject::kCount: break;
  }
  return "unknown";
}

std::string LayoutDifference(const std::vector<std::string>& here, const std::vector<std::string>& peer) {
  const size_t n = std::max(here.size(), peer.size());
  for (size_t k = 0; k < n; ++k) {
    const std::string a = k < here.size() ? "'" + here[k] + "'" : "nothing";
    const std::string b = k < peer.size() ? "'" + peer[k] + "'" : "nothing";
    if (a != b) return absl::StrCat("tensor ", k, " differs: here ", a, ", the peer ", b);
  }
  return "the layouts read alike but hash differently (a peer of another gut version?)";
}

std::optional<Mismatch> CompareComputation(const gut::v1::Hello& h, const Computation& ours) {
  const std::string who = absl::StrCat("agent ", h.sender_rank());
  if (h.layout_hash() != ours.layout_hash) {
    return Mismatch{Reject::kLayout, absl::StrCat(who, " runs another model (layout hash ", absl::Hex(h.layout_hash()),
                                                  "): ", LayoutDifference(*ours.layout, {h.layout().begin(), h.layout().end()}))};
  }
  if (h.model_sha256() != ours.model_sha256) {
    return Mismatch{Reject::kLayout, absl::StrCat(who, " runs model file sha256 '", h.model_sha256().substr(0, 64),
                                                  "', this agent '", ours.model_sha256, "'")};
  }
  if ((h.numerics().empty() ? "native" : h.numerics()) != ours.numerics) {  // "": an agent of an older build
    return Mismatch{Reject::kNumerics, absl::StrCat(who, " computes in run.numerics ", h.numerics().substr(0, 32),
                                                    " mode, this agent in ", ours.numerics)};
  }
  if (h.codec() != ours.codec) {
    return Mismatch{Reject::kCodec, absl::StrCat("codec ", gut::v1::Codec_Name(h.codec()), " is not the run's")};
  }
  return std::nullopt;
}

std::string StreamEndCause(int grpc_code, const std::string& message) {
  const std::string m = absl::AsciiStrToLower(message);
  constexpr int kCancelled = 1, kUnavailable = 14;  // grpc::StatusCode, without gRPC's headers here
  std::string cause;
  if (absl::StrContains(m, "keepalive") || absl::StrContains(m, "ping timeout")) {
    cause = "stopped answering: no keepalive ping answered (hung, paused, or cut off by the network)";
  } else if (grpc_code == kUnavailable &&
             (absl::StrContains(m, "connection reset") || absl::StrContains(m, "socket closed") ||
              absl::StrContains(m, "broken pipe") || absl::StrContains(m, "end of tcp stream") ||
              absl::StrContains(m, "connection refused"))) {
    cause = "closed its connection (its process exited, was killed or restarted)";
  } else if (grpc_code == kCancelled) {
    cause = "cancelled its stream";
  } else {
    cause = "ended the stream with an error";
  }
  return absl::StrCat(cause, ": ", message, " (code ", grpc_code, ")");
}

}  // namespace gut::services

#include "core/train/epoch_driver.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace gut::core {

int RunPlan::EpochOf(int64_t round) const {
  if (rounds_per_epoch <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(round / rounds_per_epoch, epochs));
}

absl::Status DriveRun(const RunPlan& plan, int64_t start_round, RunParticipant* p) {
  if (plan.rounds_per_epoch <= 0 || plan.epochs < 0 || plan.eval_every < 1 || start_round < 0 ||
      start_round > plan.total_rounds()) {
    return absl::InvalidArgumentError(absl::StrCat("run plan: ", plan.epochs, " epochs of ", plan.rounds_per_epoch,
                                                   " rounds (evaluating every ", plan.eval_every,
                                                   ") cannot start at round ", start_round));
  }
  const int64_t every = plan.checkpoint_every_rounds;
  auto after_round = [&](int64_t done) -> absl::Status {
    if (every > 0 && done % every == 0) return p->Checkpoint(done);
    return absl::OkStatus();
  };
  for (int64_t r = start_round; r < plan.training_rounds(); ++r) {
    if (p->StopRequested()) return absl::CancelledError(absl::StrCat("stopped at round ", r));
    const int epoch = plan.EpochOf(r);
    const double lr = plan.schedule.At(epoch);
    if (auto s = p->TrainRound(r, lr); !s.ok()) return s;
    const int64_t done = r + 1;
    if (done % plan.rounds_per_epoch == 0) {
      EpochEnd end;
      end.epoch = epoch + 1;
      end.rounds = done;
      end.lr = lr;
      end.train_loss = p->TakeEpochLoss();
      end.evaluate = end.epoch % plan.eval_every == 0 || end.epoch == plan.epochs;
      if (!std::isfinite(end.train_loss)) {
        return absl::AbortedError(absl::StrCat("training diverged at epoch ", end.epoch, " (mean train loss ",
                                               end.train_loss, "): ", p->DivergenceHint()));
      }
      if (auto s = p->EndEpoch(end); !s.ok()) return s;
    }
    if (auto s = after_round(done); !s.ok()) return s;
  }
  for (int64_t r = std::max(start_round, plan.training_rounds()); r < plan.total_rounds(); ++r) {
    if (p->StopRequested()) return absl::CancelledError(absl::StrCat("stopped at round ", r));
    if (auto s = p->GossipRound(r); !s.ok()) return s;
    if (auto s = after_round(r + 1); !s.ok()) return s;
  }
  return p->Finish(plan.total_rounds());
}

}  // namespace gut::core

#include "core/common/process.h"

#include <malloc.h>

namespace gut::core {

void TuneAllocator() {
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

}  // namespace gut::core

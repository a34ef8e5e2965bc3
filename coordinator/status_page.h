// The coordinator's live status page, served on its --metrics address next to /metrics:
//   /        a self-contained page (no external assets): the graph with agents coloured by state
//            and links by health, a table of every agent's round, epoch, loss and accuracy, and the
//            run's progress with its ETA; it refreshes itself from /status.json every second;
//   /status.json  the same facts for scripts.
#ifndef GUT_COORDINATOR_STATUS_PAGE_H_
#define GUT_COORDINATOR_STATUS_PAGE_H_

#include <string>

#include "coordinator/coordinator_service.h"

namespace gut::coordinator {

std::string StatusJson(const CoordinatorView& v);
const std::string& StatusPageHtml();
// The Content-Security-Policy the page is served with: its own inline script (by hash), inline
// styles, fetches from its own origin, nothing else.
const std::string& StatusPageCsp();

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_STATUS_PAGE_H_

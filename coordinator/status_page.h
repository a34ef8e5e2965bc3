// The coordinator's live status page, served on its --metrics address next to /metrics:
//   /        a self-contained page (no external assets): the graph with agents coloured by state
//            and links by health, a table of every agent's round, epoch, loss and accuracy, and the
//            run's progress with its ETA; it refreshes itself from /status.json every second;
//   /status.json  the same facts for scripts;
//   status.html in --out when the run ends: the page with its final state built in.
#ifndef GUT_COORDINATOR_STATUS_PAGE_H_
#define GUT_COORDINATOR_STATUS_PAGE_H_

#include <string>

#include "coordinator/coordinator_service.h"

namespace gut::coordinator {

std::string StatusJson(const CoordinatorView& v);
// The page with `v` built in instead of fetched: status.html, the run's final state next to
// summary.json, readable after the coordinator is gone (open it from disk).
std::string StatusPageFile(const CoordinatorView& v);
const std::string& StatusPageHtml();
// The Content-Security-Policy the page is served with: its own inline script (by hash), inline
// styles, fetches from its own origin, nothing else.
const std::string& StatusPageCsp();

}  // namespace gut::coordinator

#endif  // GUT_COORDINATOR_STATUS_PAGE_H_

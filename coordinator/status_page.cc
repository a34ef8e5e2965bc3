#include "coordinator/status_page.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "core/common/redact.h"
#include "core/common/sha256.h"

namespace gut::coordinator {
namespace {

// NaN and infinity are not JSON: they become null.
nlohmann::json Number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json StatusObject(const CoordinatorView& v) {
  const bool over = v.status != "running" && v.status != "joining";
  nlohmann::json agents = nlohmann::json::array();
  std::set<std::pair<int, int>> down;  // links an end reports as down
  for (int rank = 0; rank < v.expected; ++rank) {
    auto it = v.agents.find(rank);
    if (it == v.agents.end()) {  // not joined yet: grey, and its links are pending, not lost
      agents.push_back({{"rank", rank}, {"name", ""}, {"state", "joining"}, {"round", 0}, {"epoch", 0},
                        {"loss", nullptr}, {"accuracy", nullptr}, {"last_heard_s", nullptr}});
      continue;
    }
    const AgentRecord& a = it->second;
    // Once the run is over nobody is live: an agent still beating has been told to stop.
    std::string state = AgentStateName(a.state);
    if (over && (a.state == AgentState::kAlive || a.state == AgentState::kUnknown)) state = "stopped";
    agents.push_back({{"rank", rank},
                      {"name", a.name},
                      {"state", state},
                      {"round", a.round},
                      {"epoch", a.epoch},
                      {"loss", Number(a.loss)},
                      {"accuracy", Number(a.accuracy)},
                      {"incarnation", a.incarnation},
                      {"generation", a.generation},
                      {"waited_on_s", v.waited_on_recent.count(rank) ? v.waited_on_recent.at(rank) : 0.0},
                      {"last_heard_s", a.last_seen == absl::InfinitePast()
                                           ? nlohmann::json(nullptr)
                                           : nlohmann::json(std::max(0.0, absl::ToDoubleSeconds(v.now - a.last_seen)))}});
    for (int p : a.peers_down) down.insert({std::min(rank, p), std::max(rank, p)});
  }
  nlohmann::json links = nlohmann::json::array();
  for (const auto& [i, j] : v.edges) {
    auto joined = [&](int r) { return v.agents.count(r) > 0; };
    auto alive = [&](int r) {
      auto it = v.agents.find(r);
      return it != v.agents.end() && it->second.present();
    };
    const bool up = alive(i) && alive(j) && !down.count({i, j});
    const char* state = !joined(i) || !joined(j) ? "pending" : over ? "ended" : up ? "up" : "down";
    links.push_back({{"a", i}, {"b", j}, {"up", up}, {"state", state}});
  }
  nlohmann::json dropped = nlohmann::json::array();
  for (const auto& d : v.dropped) dropped.push_back({{"rank", d.rank}, {"round", d.round}});
  const ProgressEstimate& p = v.progress;
  nlohmann::json j = {{"run_id", v.run_id},
                      {"metric", v.metric},
                      {"status", v.status},
                      {"failure", core::RedactPaths(v.failure)},
                      {"time", absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", v.now, absl::UTCTimeZone())},
                      {"agents_expected", v.expected},
                      {"agents_joined", v.joined},
                      {"agents_active", v.active},
                      {"generation", v.generation},
                      {"epoch", v.epoch},
                      {"epochs", v.epochs},
                      {"rounds_per_epoch", v.rounds_per_epoch},
                      {"round", p.round},
                      {"rounds_total", p.total},
                      {"progress", p.total > 0 ? p.fraction() : v.epochs > 0 ? static_cast<double>(v.epoch) / v.epochs : 0.0},
                      {"rounds_per_second", Number(p.rounds_per_s)},
                      {"eta_seconds", Number(p.eta_s)},
                      {"stalled_since", nullptr},
                      {"straggler", v.straggler >= 0 ? nlohmann::json(v.straggler) : nlohmann::json(nullptr)},
                      {"stalled_for_s", nullptr},
                      {"agents", agents},
                      {"links", links},
                      {"dropped", dropped}};
  if (p.stalled) {
    j["stalled_since"] = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", p.stalled_since, absl::UTCTimeZone());
    j["stalled_for_s"] = absl::ToDoubleSeconds(v.now - p.stalled_since);
  }
  if (v.has_last) {
    j["last_epoch"] = {{"epoch", v.last.epoch},
                       {"train_loss", Number(v.last.train_loss)},
                       {"accuracy_mean", v.last.evaluated ? Number(v.last.acc_mean) : nullptr},
                       {"accuracy_min", v.last.evaluated ? Number(v.last.acc_min) : nullptr},
                       {"accuracy_max", v.last.evaluated ? Number(v.last.acc_max) : nullptr},
                       {"consensus", Number(v.last.consensus)},
                       {"rounds_per_second", Number(v.last.rounds_per_s)}};
  }
  return j;
}

}  // namespace

std::string StatusJson(const CoordinatorView& v) { return StatusObject(v).dump(); }

std::string StatusPageFile(const CoordinatorView& v) {
  // The JSON sits in a data block the page reads instead of fetching status.json; "<" is escaped
  // so that no text in it (an agent's name, a failure) can close the block.
  std::string data = StatusObject(v).dump();
  std::string escaped;
  for (char c : data) {
    if (c == '<') escaped += "\\u003c";
    else escaped.push_back(c);
  }
  std::string page = StatusPageHtml();
  const size_t at = page.find("<script>");
  page.insert(at, absl::StrCat("<script type=\"application/json\" id=\"final-state\">", escaped, "</script>\n"));
  return page;
}

const std::string& StatusPageHtml() {
  static const std::string* page = new std::string(R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gut run</title>
<style>
  body { font-family: sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; margin-bottom: 0.2em; }
  #summary { margin-bottom: 1em; }
  .bar { width: 420px; height: 14px; background: #eee; border-radius: 7px; overflow: hidden; display: inline-block;
         vertical-align: middle; }
  .bar > div { height: 100%; background: #2b8cbe; }
  #layout { display: flex; gap: 2em; align-items: flex-start; }
  table { border-collapse: collapse; font-size: 0.9em; }
  th, td { padding: 2px 10px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
  th:nth-child(2), td:nth-child(2), th:nth-child(3), td:nth-child(3) { text-align: left; }
  .state { font-weight: bold; }
  .legend span { display: inline-block; margin-right: 1em; }
  .dot { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 4px; }
  #error, #stalled { color: #b00; }
  #saved { color: #666; font-size: 0.9em; }
  #straggler { color: #a05a00; }
  tr[data-straggler="true"] td { background: #fff1dc; }
</style>
</head>
<body>
<h1>gut run <span id="run"></span></h1>
<div id="summary">
  <div><span class="state" id="status">loading</span> &middot; epoch <span id="epoch">-</span>
    &middot; generation <span id="generation">-</span> &middot; agents <span id="agents">-</span></div>
  <div><span class="bar"><div id="progress" style="width:0%"></div></span> <span id="percent"></span>
    &middot; ETA <span id="eta">-</span> &middot; <span id="rate">-</span> rounds/s</div>
  <div><span id="metric-label">accuracy</span> <span id="acc">-</span> &middot; loss <span id="loss">-</span>
    &middot; consensus distance <span id="consensus">-</span></div>
  <div id="stalled"></div>
  <div id="straggler"></div>
  <div id="error"></div>
  <div id="saved"></div>
</div>
<div id="layout">
  <div>
    <svg id="graph" width="380" height="380" viewBox="-210 -210 420 420" role="img" aria-label="topology"></svg>
    <div class="legend" id="legend"></div>
  </div>
  <table id="table">
    <thead><tr><th>rank</th><th>name</th><th>state</th><th>round</th><th>epoch</th><th>loss</th><th id="metric-col">accuracy</th><th title="seconds its neighbours waited for its messages in the last 30 s">waited on</th><th>last heard</th></tr></thead>
    <tbody></tbody>
  </table>
</div>
<script>
"use strict";
const colours = {joining: "#bbbbbb", alive: "#2ca02c", finished: "#1f77b4", unknown: "#999999", lost: "#d62728",
                 away: "#ff7f0e", failed: "#7f0000", stopped: "#555555", dropped: "#dddddd"};
// Links: up, down (an end lost or reporting it down), pending (an end not joined yet), ended.
const linkStyle = {up: ["#888", 1.5, ""], down: ["#d62728", 3, "6 4"], pending: ["#cccccc", 1, "2 4"],
                   ended: ["#aaaaaa", 1, ""]};
document.getElementById("legend").innerHTML = Object.entries(colours).map(
    ([s, c]) => `<span><i class="dot" style="background:${c}"></i>${s}</span>`).join("");
const fmt = (v, d) => (v === null || v === undefined) ? "-" : Number(v).toFixed(d);
const pct = v => (v === null || v === undefined) ? "-" : (100 * v).toFixed(2) + "%";
// Names come from agents: text, never markup.
const esc = v => String(v).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
let metric = pct;  // the run's test metric: accuracy in percent, or an RMSE
function duration(s) {
  if (s === null || s === undefined) return "-";
  s = Math.round(s);
  return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
}
function draw(st) {
  const svg = document.getElementById("graph");
  const n = st.agents_expected, r = 170;
  const pos = i => [r * Math.sin(2 * Math.PI * i / n), -r * Math.cos(2 * Math.PI * i / n)];
  let s = "";
  for (const l of st.links) {
    const [x1, y1] = pos(l.a), [x2, y2] = pos(l.b);
    const [colour, width, dash] = linkStyle[l.state] || linkStyle.down;
    s += `<line class="link" data-a="${l.a}" data-b="${l.b}" data-up="${l.up}" data-state="${l.state}" x1="${x1}" ` +
         `y1="${y1}" x2="${x2}" y2="${y2}" stroke="${colour}" stroke-width="${width}"` +
         `${dash ? ` stroke-dasharray="${dash}"` : ""}/>`;
  }
  for (const a of st.agents) {
    const [x, y] = pos(a.rank);
    s += `<g class="agent" data-rank="${a.rank}" data-state="${a.state}"><circle cx="${x}" cy="${y}" r="14" ` +
         `fill="${colours[a.state] || "#999"}"/><text x="${x}" y="${y + 4}" text-anchor="middle" font-size="11" ` +
         `fill="white">${a.rank}</text><title>${esc(a.name)}: ${a.state}, round ${a.round}</title></g>`;
  }
  svg.innerHTML = s;
}
function render(st) {
  const rmse = st.metric === "rmse";
  metric = rmse ? (v => fmt(v, 4)) : pct;
  document.getElementById("metric-label").textContent = rmse ? "test RMSE" : "accuracy";
  document.getElementById("metric-col").textContent = rmse ? "RMSE" : "accuracy";
  document.getElementById("run").textContent = st.run_id;
  document.getElementById("status").textContent = st.status + (st.failure ? ": " + st.failure : "");
  document.getElementById("epoch").textContent = st.epoch + " / " + st.epochs;
  document.getElementById("generation").textContent = st.generation;
  // "active" counts the ranks still in the run; those not heard from are named apart.
  const missing = st.agents.filter(a => ["lost", "away", "unknown"].includes(a.state)).map(a => a.rank);
  const joining = st.agents.filter(a => a.state === "joining").length;
  document.getElementById("agents").textContent = st.agents_active + " active of " + st.agents_expected +
      (joining ? ", " + joining + " not joined yet" : "") +
      (missing.length ? ", not heard from: " + missing.join(", ") : "") +
      (st.dropped.length ? " (dropped: " + st.dropped.map(d => d.rank).join(", ") + ")" : "");
  document.getElementById("progress").style.width = (100 * st.progress).toFixed(1) + "%";
  document.getElementById("percent").textContent = (100 * st.progress).toFixed(1) + "%";
  const last = st.last_epoch || {};
  // Progress, rate and ETA come from the agents' heartbeat rounds, from round 1 on.
  document.getElementById("eta").textContent = duration(st.eta_seconds);
  document.getElementById("rate").textContent = fmt(st.rounds_per_second, 1);
  document.getElementById("stalled").textContent = st.stalled_since === null ? "" :
      "stalled since " + st.stalled_since + " (" + duration(st.stalled_for_s) + "): no active agent has completed " +
      "a round since round " + st.round;
  const slow = st.agents.find(a => a.rank === st.straggler);
  document.getElementById("straggler").textContent = slow === undefined ? "" :
      "the run waits for agent " + slow.rank + " (" + slow.name + "): its neighbours waited " +
      fmt(slow.waited_on_s, 1) + " s for it in the last 30 s";
  document.getElementById("acc").textContent = metric(last.accuracy_mean) +
      (last.accuracy_min === null || last.accuracy_min === undefined ? "" :
       " [" + metric(last.accuracy_min) + ", " + metric(last.accuracy_max) + "]");
  document.getElementById("loss").textContent = fmt(last.train_loss, 4);
  document.getElementById("consensus").textContent = last.consensus === undefined ? "-" : Number(last.consensus).toExponential(3);
  draw(st);
  document.querySelector("#table tbody").innerHTML = st.agents.map(a =>
      `<tr class="agent-row" data-rank="${a.rank}"${a.rank === st.straggler ? " data-straggler=\"true\"" : ""}><td>${a.rank}</td><td>${esc(a.name)}</td>` +
      `<td class="state" style="color:${colours[a.state] || "#999"}">${a.state}</td><td class="round">${a.round}</td>` +
      `<td>${a.epoch}</td><td>${fmt(a.loss, 4)}</td><td>${metric(a.accuracy)}</td>` +
      `<td class="waited">${fmt(a.waited_on_s, 1)} s</td><td class="heard">${a.last_heard_s === null ? "-" : fmt(a.last_heard_s, 1) + " s ago"}</td></tr>`).join("");
}
async function tick() {
  try {
    const r = await fetch("status.json", {cache: "no-store"});
    render(await r.json());
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "coordinator unreachable (" + e + "); retrying";
  }
  setTimeout(tick, 1000);
}
// status.html, written next to summary.json when the run ends, carries its final state itself.
const saved = document.getElementById("final-state");
if (saved) {
  const st = JSON.parse(saved.textContent);
  render(st);
  document.getElementById("saved").textContent = "the run's final state, saved at " + st.time;
} else {
  tick();
}
</script>
</body>
</html>
)HTML");
  return *page;
}

namespace {
std::string Base64(const std::array<uint8_t, 32>& d) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  for (size_t k = 0; k < d.size(); k += 3) {
    const uint32_t v = uint32_t{d[k]} << 16 | (k + 1 < d.size() ? uint32_t{d[k + 1]} << 8 : 0) |
                       (k + 2 < d.size() ? d[k + 2] : 0);
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(k + 1 < d.size() ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back(k + 2 < d.size() ? kAlphabet[v & 63] : '=');
  }
  return out;
}
}  // namespace

const std::string& StatusPageCsp() {
  // The page's one inline script, allowed by its hash: nothing injected into the page (an agent
  // name, a failure text) can run, inline event handlers included; the page may fetch only from
  // its own origin and load nothing else.
  static const std::string* csp = [] {
    const std::string& page = StatusPageHtml();
    const size_t a = page.find('>', page.find("<script")) + 1;
    core::Sha256 h;
    h.Update(absl::string_view(page).substr(a, page.find("</script>") - a));
    return new std::string(absl::StrCat("default-src 'none'; script-src 'sha256-", Base64(h.Finish()),
                                        "'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; "
                                        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"));
  }();
  return *csp;
}

}  // namespace gut::coordinator

#include "core/report/plot.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gut::report {
namespace {

constexpr double kW = 900, kH = 300, kLeft = 60, kRight = 20, kTop = 30, kBottom = 40;

struct Panel {
  double y0;  // top of the panel
  double lo, hi;
  bool log = false;
  double Y(double v) const {
    double t = log ? (std::log10(std::max(v, 1e-12)) - lo) / (hi - lo) : (v - lo) / (hi - lo);
    t = std::clamp(t, 0.0, 1.0);
    return y0 + kTop + (1 - t) * (kH - kTop - kBottom);
  }
};

double X(int epoch, int epochs) {
  const double t = epochs <= 1 ? 0.5 : (epoch - 1) / double(epochs - 1);
  return kLeft + t * (kW - kLeft - kRight);
}

std::string Polyline(const std::vector<std::pair<double, double>>& pts, const char* colour, double width) {
  std::string p;
  for (const auto& [x, y] : pts) absl::StrAppend(&p, absl::StrFormat("%.1f,%.1f ", x, y));
  return absl::StrFormat("<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" points=\"%s\"/>\n", colour, width, p);
}

std::string Axes(const Panel& p, const std::string& label, const std::vector<double>& ticks, int epochs,
                 const char* fmt) {
  std::string s = absl::StrFormat(
      "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#999\"/>\n", kLeft,
      p.y0 + kTop, kW - kLeft - kRight, kH - kTop - kBottom);
  absl::StrAppend(&s, absl::StrFormat("<text x=\"%.0f\" y=\"%.0f\" font-size=\"14\">%s</text>\n", kLeft,
                                      p.y0 + kTop - 8, label));
  for (double t : ticks) {
    const double y = p.Y(p.log ? std::pow(10.0, t) : t);
    absl::StrAppend(&s, absl::StrFormat("<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                                        "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">",
                                        kLeft, kW - kRight, y, y, kLeft - 4, y + 4));
    absl::StrAppend(&s, absl::StrFormat(fmt, p.log ? std::pow(10.0, t) : t), "</text>\n");
  }
  const int step = std::max(1, epochs / 10);
  for (int e = 1; e <= epochs; e += step) {
    absl::StrAppend(&s, absl::StrFormat("<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">%d</text>\n",
                                        X(e, epochs), p.y0 + kH - kBottom + 14, e));
  }
  absl::StrAppend(&s, absl::StrFormat("<text x=\"%.0f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">epoch</text>\n",
                                      (kW + kLeft) / 2, p.y0 + kH - kBottom + 30));
  return s;
}

}  // namespace

std::string Escape(const std::string& in) {
  std::string out;
  for (char c : in) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else if (c == '"') out += "&quot;";
    else out += c;
  }
  return out;
}

std::string RenderSvg(const std::string& title, const std::vector<EpochRecord>& epochs, const std::string& label,
                      bool fraction) {
  const int n = epochs.empty() ? 1 : epochs.back().epoch;
  std::string s = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%.0f\" y=\"20\" font-size=\"16\" font-weight=\"bold\">%s</text>\n",
      kW, 3 * kH + 25, kLeft, Escape(title));
  // The test metric, with the band between the worst and the best agent.
  double lo = HUGE_VAL, hi = -HUGE_VAL;
  for (const auto& r : epochs)
    if (r.evaluated) {
      lo = std::min(lo, r.acc_min);
      hi = std::max(hi, r.acc_max);
    }
  std::vector<double> ticks;
  if (fraction) {
    if (hi <= lo) {
      lo = 0;
      hi = 1;
    }
    lo = std::floor(lo * 10) / 10;
    hi = std::min(1.0, std::ceil(hi * 20) / 20);
    const double step = hi - lo > 0.3 ? 0.1 : 0.05;
    for (double t = lo; t <= hi + 1e-9; t += step) ticks.push_back(t);
  } else {
    // Any positive range (an RMSE): five ticks on a rounded span from 0.
    if (!(hi > 0)) hi = 1;
    const double unit = std::pow(10.0, std::floor(std::log10(hi)));
    hi = std::ceil(hi / unit) * unit;
    lo = 0;
    for (int k = 0; k <= 4; ++k) ticks.push_back(hi * k / 4);
  }
  Panel acc{25, lo, hi};
  absl::StrAppend(&s, Axes(acc, label + ": mean over agents (line), min-max (band)", ticks, n, fraction ? "%.2f" : "%.3g"));
  std::string band;
  std::vector<std::pair<double, double>> mean;
  for (const auto& r : epochs)
    if (r.evaluated) {
      absl::StrAppend(&band, absl::StrFormat("%.1f,%.1f ", X(r.epoch, n), acc.Y(r.acc_max)));
      mean.emplace_back(X(r.epoch, n), acc.Y(r.acc_mean));
    }
  for (auto it = epochs.rbegin(); it != epochs.rend(); ++it)
    if (it->evaluated) absl::StrAppend(&band, absl::StrFormat("%.1f,%.1f ", X(it->epoch, n), acc.Y(it->acc_min)));
  absl::StrAppend(&s, "<polygon fill=\"#9ecae1\" fill-opacity=\"0.6\" points=\"", band, "\"/>\n");
  absl::StrAppend(&s, Polyline(mean, "#08519c", 2));

  // Train loss and consensus distance, log scale.
  auto log_panel = [&](double y0, const std::string& label, auto get, const char* colour) {
    double mn = 1e300, mx = -1e300;
    for (const auto& r : epochs) {
      const double v = std::log10(std::max(get(r), 1e-12));
      mn = std::min(mn, v);
      mx = std::max(mx, v);
    }
    if (!(mx > mn)) {
      mn -= 1;
      mx += 1;
    }
    Panel p{y0, std::floor(mn), std::ceil(mx), true};
    std::vector<double> t;
    for (double v = p.lo; v <= p.hi + 1e-9; v += 1) t.push_back(v);
    absl::StrAppend(&s, Axes(p, label, t, n, "%.0e"));
    std::vector<std::pair<double, double>> pts;
    for (const auto& r : epochs) pts.emplace_back(X(r.epoch, n), p.Y(get(r)));
    absl::StrAppend(&s, Polyline(pts, colour, 2));
  };
  log_panel(kH + 25, "mean train loss (log)", [](const EpochRecord& r) { return r.train_loss; }, "#a63603");
  log_panel(2 * kH + 25, "consensus distance sqrt(1/n sum ||x_i - mean||^2) (log)",
            [](const EpochRecord& r) { return r.consensus; }, "#54278f");
  absl::StrAppend(&s, "</svg>\n");
  return s;
}

namespace {
// About five round tick values (steps of 1, 2 or 5 times a power of ten) inside [lo, hi].
std::vector<double> NiceTicks(double lo, double hi) {
  const double raw = (hi - lo) / 5, mag = std::pow(10.0, std::floor(std::log10(raw))), f = raw / mag;
  const double step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step); k * step <= hi + 1e-9 * step; k += 1) ticks.push_back(k * step);
  return ticks;
}
}  // namespace

std::string RenderLineChart(const std::string& title, const std::string& x_label, const std::string& y_label,
                            const std::vector<Series>& series) {
  static const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  constexpr double W = 900, H = 480, L = 60, R = 190, T = 40, B = 50;
  double x0 = 1e300, x1 = -1e300, y0 = 1e300, y1 = -1e300;
  for (const auto& s : series) {
    for (size_t k = 0; k < s.x.size(); ++k) {
      x0 = std::min(x0, s.x[k]);
      x1 = std::max(x1, s.x[k]);
      y0 = std::min(y0, s.lo.empty() ? s.y[k] : s.lo[k]);
      y1 = std::max(y1, s.hi.empty() ? s.y[k] : s.hi[k]);
    }
  }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = 0.03 * (y1 - y0);
  y0 -= pad;
  y1 += pad;
  auto X = [&](double v) { return L + (v - x0) / (x1 - x0) * (W - L - R); };
  auto Y = [&](double v) { return T + (1 - (v - y0) / (y1 - y0)) * (H - T - B); };
  std::string out = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" font-family=\"sans-serif\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      "<text x=\"%.0f\" y=\"22\" font-size=\"16\">%s</text>\n"
      "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" stroke=\"#999\"/>\n",
      W, H, L, title, L, T, W - L - R, H - T - B);
  for (double v : NiceTicks(y0, y1)) {
    const double y = Y(v);
    absl::StrAppend(&out, absl::StrFormat("<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                                          "<text x=\"%.0f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g</text>\n",
                                          L, W - R, y, y, L - 4, y + 4, v));
  }
  for (double xv : NiceTicks(x0, x1)) {
    absl::StrAppend(&out, absl::StrFormat("<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">%g</text>\n",
                                          X(xv), H - B + 14, xv));
  }
  absl::StrAppend(&out, absl::StrFormat("<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\" text-anchor=\"middle\">%s</text>\n"
                                        "<text x=\"14\" y=\"%.0f\" font-size=\"12\" transform=\"rotate(-90 14 %.0f)\" "
                                        "text-anchor=\"middle\">%s</text>\n",
                                        (W - R + L) / 2, H - B + 34, x_label, (H - B + T) / 2, (H - B + T) / 2, y_label));
  for (size_t i = 0; i < series.size(); ++i) {
    const auto& s = series[i];
    const char* colour = kColours[i % 10];
    if (!s.lo.empty() && s.x.size() > 1) {
      std::string pts;
      for (size_t k = 0; k < s.x.size(); ++k) absl::StrAppend(&pts, absl::StrFormat("%.1f,%.1f ", X(s.x[k]), Y(s.hi[k])));
      for (size_t k = s.x.size(); k-- > 0;) absl::StrAppend(&pts, absl::StrFormat("%.1f,%.1f ", X(s.x[k]), Y(s.lo[k])));
      absl::StrAppend(&out, absl::StrFormat("<polygon fill=\"%s\" fill-opacity=\"0.15\" stroke=\"none\" points=\"%s\"/>\n",
                                            colour, pts));
    }
    std::vector<std::pair<double, double>> pts;
    for (size_t k = 0; k < s.x.size(); ++k) pts.push_back({X(s.x[k]), Y(s.y[k])});
    absl::StrAppend(&out, Polyline(pts, colour, 1.6));
    if (s.x.size() == 1) {
      absl::StrAppend(&out, absl::StrFormat("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", pts[0].first,
                                            pts[0].second, colour));
    }
    const double ly = T + 14 + 18 * i;
    absl::StrAppend(&out, absl::StrFormat("<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.0f\" y2=\"%.0f\" stroke=\"%s\" stroke-width=\"3\"/>"
                                          "<text x=\"%.0f\" y=\"%.0f\" font-size=\"12\">%s</text>\n",
                                          W - R + 12, W - R + 32, ly, ly, colour, W - R + 38, ly + 4, s.name));
  }
  absl::StrAppend(&out, "</svg>\n");
  return out;
}

}  // namespace gut::report

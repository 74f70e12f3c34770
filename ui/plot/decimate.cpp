#include "plot/decimate.h"

#include <algorithm>

namespace bl {

QList<QPointF> decimate_m4(const QList<QPointF>& pts, double x0, double x1, int width) {
  width = std::max(width, 1);
  auto by_x = [](const QPointF& p, double x) { return p.x() < x; };
  auto lo = std::lower_bound(pts.begin(), pts.end(), x0, by_x);
  auto hi = std::upper_bound(pts.begin(), pts.end(), x1,
                             [](double x, const QPointF& p) { return x < p.x(); });
  QList<QPointF> out;
  if (hi - lo <= 4 * qsizetype(width) || !(x1 > x0)) {
    out = QList<QPointF>(lo, hi);
    return out;
  }
  out.reserve(4 * qsizetype(width));
  const double scale = double(width) / (x1 - x0);
  auto column = [&](const QPointF& p) { return std::min(width - 1, int((p.x() - x0) * scale)); };
  for (auto it = lo; it != hi;) {
    const int col = column(*it);
    auto first = it, last = it, mn = it, mx = it;
    for (; it != hi && column(*it) == col; ++it) {
      last = it;
      if (it->y() < mn->y()) mn = it;
      if (it->y() > mx->y()) mx = it;
    }
    // Emit the (up to) four distinct points in x order.
    auto a = std::min(mn, mx), b = std::max(mn, mx);
    out.append(*first);
    if (a != first) out.append(*a);
    if (b != a && b != first) out.append(*b);
    if (last != b && last != a && last != first) out.append(*last);
  }
  return out;
}

}  // namespace bl

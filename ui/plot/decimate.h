// Pixel-column decimation for line charts ("M4"): a series of any length is cut
// to at most 4 points per pixel column (first, min, max, last), so the drawn
// line looks the same as the full series and spikes survive.
#pragma once

#include <QList>
#include <QPointF>

namespace bl {

/// Points of `pts` (sorted by x) inside [x0, x1], reduced to <= 4 per column of
/// `width` equal-width columns, in x order. Series that already fit are returned
/// as they are (clipped to the range). width < 1 is treated as 1.
QList<QPointF> decimate_m4(const QList<QPointF>& pts, double x0, double x1, int width);

}  // namespace bl

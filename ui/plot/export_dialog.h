// Asks where and how large to export a charts panel (PNG or SVG, by the
// chosen filter) and writes it: the plots alone, never a screen grab.
#pragma once

#include <QSize>
#include <QString>

class QWidget;

namespace bl {

class ChartsPanel;

/// Export sizes offered, largest last; the first is the default.
inline constexpr QSize kExportSizes[] = {{1600, 1000}, {1200, 750}, {800, 500}, {2400, 1500}};

/// Runs the save dialog and the size choice; returns the written path, or an
/// empty string when cancelled or failed (`error` says why on failure).
QString export_charts_interactive(QWidget* parent, ChartsPanel* charts, const QString& stem,
                                  QString* error);

}  // namespace bl

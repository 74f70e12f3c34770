#include "plot/export_dialog.h"

#include <QFileDialog>
#include <QInputDialog>
#include <QStringList>

#include "plot/charts_panel.h"

namespace bl {

QString export_charts_interactive(QWidget* parent, ChartsPanel* charts, const QString& stem,
                                  QString* error) {
  QString filter;
  QString path =
      QFileDialog::getSaveFileName(parent, "Export charts", stem + ".png",
                                   "PNG image (*.png);;SVG vector image (*.svg)", &filter);
  if (path.isEmpty()) return {};
  const bool svg = filter.contains("svg") || path.endsWith(".svg", Qt::CaseInsensitive);
  if (svg && !path.endsWith(".svg", Qt::CaseInsensitive)) path += ".svg";
  if (!svg && !path.endsWith(".png", Qt::CaseInsensitive)) path += ".png";
  QStringList sizes;
  for (QSize s : kExportSizes) sizes << QString("%1 × %2").arg(s.width()).arg(s.height());
  bool ok = false;
  const QString pick =
      QInputDialog::getItem(parent, "Export size", "Size in pixels:", sizes, 0, false, &ok);
  if (!ok) return {};
  const QSize size = kExportSizes[qMax(0, sizes.indexOf(pick))];
  if (!charts->export_image(path, size, error)) return {};
  return path;
}

}  // namespace bl

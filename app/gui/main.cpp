// `blocklab`: the workbench window, opened with the gpt-tiny preset and the
// bundled corpus (--preset NAME, --db FILE). Without a display it explains so
// and points to the CLI.
#include <QApplication>
#include <QStyleFactory>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "main_window.h"

namespace {

/// True if Qt can be expected to open a window: a platform was chosen
/// explicitly (QT_QPA_PLATFORM or -platform) or an X11/Wayland display exists.
/// Checked before QApplication, which aborts when xcb cannot connect.
bool display_available(int argc, char** argv) {
  auto set = [](const char* v) { return v && *v; };
  if (set(std::getenv("QT_QPA_PLATFORM"))) return true;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "-platform") == 0 || std::strncmp(argv[i], "-platform=", 10) == 0)
      return true;
  return set(std::getenv("DISPLAY")) || set(std::getenv("WAYLAND_DISPLAY"));
}

}  // namespace

int main(int argc, char** argv) {
  if (!display_available(argc, argv)) {
    std::fprintf(stderr,
                 "blocklab: no display found (neither DISPLAY nor WAYLAND_DISPLAY is set), so the "
                 "workbench window cannot open.\n"
                 "Train headless instead:\n"
                 "  ./build/app/blocklab-cli train --preset gpt-tiny\n"
                 "(or set QT_QPA_PLATFORM=offscreen to run the window without showing it).\n");
    return 2;
  }
  QApplication app(argc, argv);
  QApplication::setApplicationName("Blocklab");
  // --preset, else the preset open at the last close, else gpt-tiny.
  std::string preset = "gpt-tiny";
  const QString last = bl::MainWindow::last_preset();
  if (!last.isEmpty()) preset = last.toStdString();
  const QStringList args = QApplication::arguments();
  const qsizetype i = args.indexOf("--preset");
  if (i >= 0 && i + 1 < args.size()) preset = args[i + 1].toStdString();
  std::string db;  // empty: $BLOCKLAB_DB, else the XDG data directory
  const qsizetype d = args.indexOf("--db");
  if (d >= 0 && d + 1 < args.size()) db = args[d + 1].toStdString();
  bl::MainWindow w(preset, db);
  w.restore_settings();  // layout, theme, chart choices, recent configs; saved on close
  w.show();
  return app.exec();
}

// The main window's furniture: the menu bar and its shortcuts, settings
// remembered between launches (QSettings redirected to a temporary directory),
// the dark theme, the Samples busy state, and a bad edit's errors grouped
// without widening the Run panel.
#include <QAction>
#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDockWidget>
#include <QFileInfo>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSlider>
#include <QSpinBox>
#include <QStandardPaths>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTest>

#include "arch/arch_panel.h"
#include "arch/error_groups.h"
#include "arch/model_form.h"
#include "browser/run_browser.h"
#include "main_window.h"
#include "plot/charts_panel.h"
#include "plot/plot_view.h"
#include "samples/samples_panel.h"
#include "theme.h"
#include "training/training_panel.h"

using namespace bl;

class WorkbenchTest : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  std::string db() const { return (dir_.path() + "/experiments.db").toStdString(); }

 private slots:
  void initTestCase() {
    // Never read or write the user's real settings.
    QStandardPaths::setTestModeEnabled(true);
    QSettings::setPath(QSettings::IniFormat, QSettings::UserScope, dir_.path() + "/settings");
  }

  void menus_and_shortcuts() {
    MainWindow w("gpt-tiny", db());
    w.show();
    w.activateWindow();  // window shortcuts go to the active window
    QVERIFY(QTest::qWaitForWindowActive(&w));
    QStringList menus;
    for (QAction* a : w.menuBar()->actions()) menus << a->text().remove('&');
    QCOMPARE(menus, QStringList({"File", "Edit", "Run", "View", "Help"}));
    QCOMPARE(w.action("action_quit")->shortcut(), QKeySequence(Qt::CTRL | Qt::Key_Q));
    QCOMPARE(w.action("action_shortcuts")->shortcut(), QKeySequence(Qt::Key_F1));
    QCOMPARE(w.action("action_start")->shortcut(), QKeySequence(Qt::Key_F5));
    QVERIFY(w.action("action_about") && w.action("action_undo") && w.action("action_export"));
    // Shortcuts reach the actions from anywhere in the window.
    QTest::keyClick(&w, Qt::Key_2, Qt::ControlModifier);
    QCOMPARE(w.tabs()->currentIndex(), 1);
    QTest::keyClick(&w, Qt::Key_4, Qt::ControlModifier);
    QCOMPARE(w.tabs()->currentIndex(), 3);
    QTest::keyClick(&w, Qt::Key_F1);
    QTRY_VERIFY(w.findChild<QWidget*>("shortcuts_dialog"));
    QWidget* dialog = w.findChild<QWidget*>("shortcuts_dialog");
    dialog->close();
    w.activateWindow();
    QVERIFY(QTest::qWaitForWindowActive(&w));
    // Ctrl+Q closes the window.
    QTest::keyClick(&w, Qt::Key_Q, Qt::ControlModifier);
    QTRY_VERIFY(!w.isVisible());
  }

  void settings_round_trip() {
    QTemporaryDir configs;
    const QString model_json = configs.filePath("mine.json");
    {
      MainWindow w("llama-tiny", db());
      w.restore_settings();  // nothing saved yet: defaults
      QVERIFY(!w.dark_theme());
      QVERIFY(w.recent_configs().isEmpty());
      w.show();
      QVERIFY(w.arch_panel()->save_json(model_json));
      QVERIFY(w.open_config(model_json));
      w.tabs()->setCurrentIndex(2);
      w.charts()->set_x_axis(ChartsPanel::XAxis::kTokens);
      w.charts()->smoothing_slider()->setValue(35);
      w.charts()->set_log_y(true);
      w.training_panel()->max_steps_box()->setValue(123);
      w.browser()->set_grouping({.by = GroupSpec::By::kName, .pattern = "^(.*)-s\\d+$"});
      w.browser()->charts()->set_band(ChartsPanel::Band::kMinMax);
      w.set_dark_theme(true);
      w.resize(1450, 810);  // above the window's minimum size
      w.close();            // saves
    }
    QVERIFY(QFileInfo(dir_.path() + "/settings/Blocklab/blocklab.ini").isFile());
    QCOMPARE(MainWindow::last_preset(), QString("llama-tiny"));
    apply_theme(false);
    {
      MainWindow w(MainWindow::last_preset().toStdString(), db());
      QVERIFY(w.training_panel()->max_steps_box()->value() != 123);  // the preset's, until restored
      w.restore_settings();
      QCOMPARE(w.preset_box()->currentText(), QString("llama-tiny"));
      QCOMPARE(w.tabs()->currentIndex(), 2);
      QCOMPARE(w.charts()->x_axis(), ChartsPanel::XAxis::kTokens);
      QCOMPARE(w.charts()->smoothing_slider()->value(), 35);
      QVERIFY(w.charts()->log_box()->isChecked());
      QCOMPARE(w.training_panel()->max_steps_box()->value(), 123);
      QVERIFY(w.browser()->grouping() ==
              (GroupSpec{.by = GroupSpec::By::kName, .pattern = "^(.*)-s\\d+$"}));
      QCOMPARE(w.browser()->group_pattern_edit()->text(), QString("^(.*)-s\\d+$"));
      QCOMPARE(w.browser()->charts()->band(), ChartsPanel::Band::kMinMax);
      QVERIFY(w.dark_theme() && theme_is_dark());
      QVERIFY(w.action("action_dark")->isChecked());
      QCOMPARE(w.recent_configs(), QStringList({QFileInfo(model_json).absoluteFilePath()}));
      QCOMPARE(w.size(), QSize(1450, 810));
      w.set_dark_theme(false);
    }
    {
      // Train settings belong to their preset: another preset keeps its own.
      MainWindow w("gpt-tiny", db());
      w.restore_settings();
      QVERIFY(w.training_panel()->max_steps_box()->value() != 123);
      w.set_dark_theme(false);
    }
  }

  void dark_theme_applies() {
    MainWindow w("gpt-tiny", db());
    w.resize(1200, 800);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    w.tabs()->setCurrentWidget(w.charts());
    // Mean lightness of the middle third (grid lines and text average out).
    auto lightness_at_centre = [](QWidget* widget) {
      const QImage img = widget->grab().toImage();
      long sum = 0, n = 0;
      for (int y = img.height() / 3; y < 2 * img.height() / 3; ++y)
        for (int x = img.width() / 3; x < 2 * img.width() / 3; ++x, ++n)
          sum += img.pixelColor(x, y).lightness();
      return n ? int(sum / n) : 0;
    };
    QVERIFY(lightness_at_centre(w.charts()->loss_plot()) > 180);
    w.action("action_dark")->trigger();
    QApplication::processEvents();  // palette-change events reach every widget
    QVERIFY(w.dark_theme());
    QVERIFY(theme_is_dark());
    QVERIFY(QApplication::palette().color(QPalette::Base).lightness() < 80);
    QVERIFY(lightness_at_centre(w.charts()->loss_plot()) < 100);  // the chart too
    QVERIFY(w.arch_panel()->model_form()->palette().color(QPalette::Window).lightness() < 80);
    w.action("action_dark")->trigger();
    QVERIFY(!theme_is_dark());
    QVERIFY(lightness_at_centre(w.charts()->loss_plot()) > 180);
  }

  void samples_busy_while_generating() {
    SamplesPanel p;
    p.show();
    p.set_can_generate(true);
    QVERIFY(!p.busy() && p.busy_bar()->isHidden());
    QTest::mouseClick(p.generate_button(), Qt::LeftButton);
    QVERIFY(p.busy());
    QVERIFY(!p.busy_bar()->isHidden());
    QVERIFY(!p.generate_button()->isEnabled());  // no second request meanwhile
    QCOMPARE(p.generate_button()->text(), QString("Generating…"));
    SampleResult partial;
    partial.step = 3;
    partial.text = "ab";
    p.show_partial(partial);
    QVERIFY(p.busy());
    SampleResult done = partial;
    done.ok = true;
    done.text = "abc";
    p.add_sample(done);
    QVERIFY(!p.busy() && p.busy_bar()->isHidden());
    QVERIFY(p.generate_button()->isEnabled());
    QCOMPARE(p.generate_button()->text(), QString("Generate"));
    // Without a model the button stays off after the busy state ends.
    p.set_can_generate(false);
    p.set_busy(true);
    p.set_busy(false);
    QVERIFY(!p.generate_button()->isEnabled());
  }

  void bad_edit_errors_grouped_and_run_panel_keeps_its_width() {
    MainWindow w("jamba-tiny", db());
    w.resize(1400, 880);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(w.errors().empty());
    auto* dock = w.findChild<QDockWidget*>("run_dock");
    const int width_before = dock->width();
    QSpinBox* d = w.arch_panel()->d_model_box();
    QTest::keyClick(d, Qt::Key_A, Qt::ControlModifier);
    QTest::keyClicks(d, "130");
    QTest::keyClick(d, Qt::Key_Return);
    QVERIFY(w.errors().size() >= 8);
    QApplication::processEvents();
    QTest::qWait(50);
    const QString shown = w.training_panel()->errors_label()->text();
    const int lines = int(shown.count("•"));
    QCOMPARE(lines, int(group_errors(w.errors()).size()));
    QVERIFY2(lines * 2 < int(w.errors().size()), qPrintable(shown));
    QVERIFY2(shown.contains("layers)"), qPrintable(shown));
    QVERIFY2(dock->width() <= width_before + 4,
             qPrintable(QString("%1 -> %2").arg(width_before).arg(dock->width())));
  }
};

QTEST_MAIN(WorkbenchTest)
#include "gui_workbench_test.moc"

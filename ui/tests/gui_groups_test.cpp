// Run groups: the grouping keys and statistics (browser/run_groups.h) on known
// numbers, then the browser grouped by "config except seed" against a real
// store: the groups table's aggregates, one mean curve and band per group in
// the compare charts with the expected values, min/max bands, group colours
// and legend, runs of different lengths, live growth, and selecting a group.
#include <QComboBox>
#include <QImage>
#include <QLabel>
#include <QLineEdit>
#include <QTableView>
#include <QTableWidget>
#include <QTemporaryDir>
#include <QTest>
#include <cmath>
#include <regex>
#include <set>

#include "browser/run_browser.h"
#include "browser/run_groups.h"
#include "core/presets.h"
#include "plot/charts_panel.h"
#include "plot/plot_view.h"

using namespace bl;

namespace {

// Seed offsets of the first config's three runs: mean 0.2, sample std
// sqrt(((-0.2)^2 + (-0.1)^2 + 0.3^2) / 2) = sqrt(0.07), min 0, max 0.5.
constexpr double kOffsets[] = {0.0, 0.1, 0.5};
const double kStd = std::sqrt(0.07);

/// A finished run: loss = base - 0.01 * step + offset at every step, an eval
/// at step 19 and 39 (if reached), summary best_val_loss / final_train_loss.
int64_t write_run(ExperimentStore& s, const std::string& name, double lr, int64_t seed, int steps,
                  double base, double offset, double best, double final_loss,
                  std::vector<std::string> tags = {}) {
  Preset p = load_preset("gpt-tiny");
  p.train.learning_rate = lr;
  p.train.seed = seed;
  RunRecord r;
  r.name = name;
  r.preset = "gpt-tiny";
  r.model_config = model_config_to_json(p.model);
  r.train_config = train_config_to_json(p.train);
  r.tags = std::move(tags);
  r.dataset_path = "/data/tiny.txt";
  const int64_t id = s.create_run(r);
  for (int i = 0; i < steps; ++i) {
    const double wall = 1'700'000'000 + 0.01 * i;
    s.log_metric(id, i, wall, "loss", base - 0.01 * i + offset);
    s.log_metric(id, i, wall, "learning_rate", lr);
    s.log_metric(id, i, wall, "grad_norm", 1.0 + offset);
    s.log_metric(id, i, wall, "tokens_per_sec", 5000);
    s.log_metric(id, i, wall, "step_time_ms", 10);
    s.log_metric(id, i, wall, "tokens_seen", 128.0 * (i + 1));
    if (i == 19 || i == 39) s.log_eval(id, i, "eval_loss", base - 0.01 * i + offset + 0.05);
  }
  s.finish_run(id, RunStatus::kCompleted,
               {{"best_val_loss", best}, {"final_train_loss", final_loss}});
  s.flush();
  return id;
}

RunRecord record(int64_t id, const std::string& name, double lr, int64_t seed,
                 std::vector<std::string> tags = {}) {
  Preset p = load_preset("gpt-tiny");
  p.train.learning_rate = lr;
  p.train.seed = seed;
  RunRecord r;
  r.id = id;
  r.name = name;
  r.preset = "gpt-tiny";
  r.model_config = model_config_to_json(p.model);
  r.train_config = train_config_to_json(p.train);
  r.tags = std::move(tags);
  return r;
}

/// y of the point at x in a sorted list (NaN if absent).
double y_at(const QList<QPointF>& pts, double x) {
  for (const QPointF& p : pts)
    if (p.x() == x) return p.y();
  return std::nan("");
}

}  // namespace

class GroupsTest : public QObject {
  Q_OBJECT

  QTemporaryDir dir_;
  std::string db_;
  std::vector<int64_t> a_, b_;  // lr 1e-3 seeds 1-3 (40 steps); lr 3e-3 seeds 1-2 (40, 25 steps)
  int64_t other_ = 0;

 private slots:
  void initTestCase() {
    db_ = (dir_.path() + "/experiments.db").toStdString();
    ExperimentStore s(db_);
    const double best[] = {2.0, 2.1, 2.5}, fin[] = {3.0, 3.2, 3.4};
    for (int k = 0; k < 3; ++k)
      a_.push_back(write_run(s, "base seed " + std::to_string(k + 1), 1e-3, k + 1, 40, 4.0,
                             kOffsets[k], best[k], fin[k], {"ablation"}));
    b_.push_back(write_run(s, "high-lr seed 1", 3e-3, 1, 40, 3.0, 0.0, 1.8, 2.6));
    b_.push_back(write_run(s, "high-lr seed 2", 3e-3, 2, 25, 3.0, 0.2, 1.9, 2.8));
    other_ = write_run(s, "solo", 1e-2, 1, 10, 5.0, 0.0, 3.0, 4.0);
  }

  void strip_run_number_keeps_values() {
    QCOMPARE(strip_run_number("gpt lr 3e-3 seed 2"), std::string("gpt lr 3e-3"));
    QCOMPARE(strip_run_number("base-seed3"), std::string("base"));
    QCOMPARE(strip_run_number("base_s3"), std::string("base"));
    QCOMPARE(strip_run_number("run_07"), std::string("run"));
    QCOMPARE(strip_run_number("x-4"), std::string("x"));
    QCOMPARE(strip_run_number("wd 0.1 12"), std::string("wd 0.1"));
    QCOMPARE(strip_run_number("lr 3e-3"), std::string("lr 3e-3"));  // an exponent, not a seed
    QCOMPARE(strip_run_number("gpt2"), std::string("gpt2"));        // no separator: part of it
    QCOMPARE(strip_run_number("seed 4"), std::string("seed"));
  }

  // Sample standard deviation (n - 1); non-finite values are not counted.
  void stats_are_sample_statistics() {
    const Stats s = stats_of({1, 2, 3, 4, NAN});
    QCOMPARE(s.n, 4);
    QCOMPARE(s.mean, 2.5);
    QVERIFY(std::abs(s.std - std::sqrt(5.0 / 3.0)) < 1e-12);  // population would be sqrt(1.25)
    QCOMPARE(s.min, 1.0);
    QCOMPARE(s.max, 4.0);
    const Stats one = stats_of({7});
    QCOMPARE(one.n, 1);
    QCOMPARE(one.mean, 7.0);
    QCOMPARE(one.std, 0.0);
    QCOMPARE(stats_of({}).n, 0);
    QCOMPARE(stats_of({INFINITY}).n, 0);
  }

  // Curves of different lengths and gaps, aligned by step.
  void aggregate_aligns_by_step() {
    const std::vector<std::vector<CurvePoint>> curves = {
        {{0, 1, 1.0}, {1, 2, 2.0}, {2, 3, 3.0}, {3, 4, 4.0}},
        {{0, 1, 3.0}, {1, 2, 6.0}},
        {{1, 2, 4.0}, {1, 2, 5.0}, {3, 6, NAN}},  // step 1 repeated: its last value; NaN dropped
        {{5, 10, 9.0}},
    };
    const GroupCurve g = aggregate_curves(curves);
    QCOMPARE(g.step, (std::vector<int64_t>{0, 1, 2, 3, 5}));
    QCOMPARE(g.n, (std::vector<int>{2, 3, 1, 1, 1}));
    QCOMPARE(g.mean[0], 2.0);
    QVERIFY(std::abs(g.std[0] - std::sqrt(2.0)) < 1e-12);
    QCOMPARE(g.mean[1], 13.0 / 3.0);  // 2, 6, 5
    QVERIFY(std::abs(g.std[1] -
                     std::sqrt(((2 - 13.0 / 3) * (2 - 13.0 / 3) + (6 - 13.0 / 3) * (6 - 13.0 / 3) +
                                (5 - 13.0 / 3) * (5 - 13.0 / 3)) /
                               2)) < 1e-12);
    QCOMPARE(g.min[1], 2.0);
    QCOMPARE(g.max[1], 6.0);
    QCOMPARE(g.mean[2], 3.0);
    QCOMPARE(g.std[2], 0.0);
    QCOMPARE(g.x[3], 4.0);  // the NaN point's x does not count either
    QCOMPARE(g.mean[4], 9.0);
    QCOMPARE(g.x[4], 10.0);
    QCOMPARE(aggregate_curves({}).size(), size_t(0));
    // x is the mean x of the runs at that step (tokens of differently batched runs).
    const GroupCurve t = aggregate_curves({{{0, 100, 1}}, {{0, 300, 3}}});
    QCOMPARE(t.x[0], 200.0);
  }

  void group_keys_and_labels() {
    const std::vector<RunRecord> runs = {
        record(5, "base seed 2", 1e-3, 2, {"a"}), record(2, "base seed 1", 1e-3, 1, {"a"}),
        record(7, "hi seed 1", 3e-3, 1),          record(9, "hi seed 2", 3e-3, 2, {"a", "b"}),
        record(3, "base seed 3", 1e-3, 3, {"a"}),
    };
    // Config except seed: groups ordered by their lowest id, ids ascending,
    // labelled by the field that differs.
    const auto cfg = group_runs(runs, {.by = GroupSpec::By::kConfigExceptSeed});
    QCOMPARE(cfg.size(), size_t(2));
    QCOMPARE(cfg[0].run_ids, (std::vector<int64_t>{2, 3, 5}));
    QCOMPARE(cfg[1].run_ids, (std::vector<int64_t>{7, 9}));
    QCOMPARE(cfg[0].label, std::string("learning_rate=0.001"));
    QCOMPARE(cfg[1].label, std::string("learning_rate=0.003"));
    // One field: the seed.
    const auto seed = group_runs(runs, {.by = GroupSpec::By::kConfigField, .field = "train.seed"});
    QCOMPARE(seed.size(), size_t(3));
    QCOMPARE(seed[0].label, std::string("seed=1"));
    QCOMPARE(seed[0].run_ids, (std::vector<int64_t>{2, 7}));
    // Tags: the whole tag set is the key.
    const auto tags = group_runs(runs, {.by = GroupSpec::By::kTags});
    QCOMPARE(tags.size(), size_t(3));
    QCOMPARE(tags[0].label, std::string("a"));
    QCOMPARE(tags[0].run_ids, (std::vector<int64_t>{2, 3, 5}));
    QCOMPARE(tags[1].label, std::string("(no tags)"));
    QCOMPARE(tags[2].label, std::string("a, b"));
    // Name without the seed, and a regex (capture group; unmatched names alone).
    const auto name = group_runs(runs, {.by = GroupSpec::By::kName});
    QCOMPARE(name.size(), size_t(2));
    QCOMPARE(name[1].label, std::string("hi"));
    const auto re = group_runs(runs, {.by = GroupSpec::By::kName, .pattern = "^(base) seed [12]$"});
    QCOMPARE(re.size(), size_t(4));  // "base" (2, 5), "base seed 3", "hi seed 1", "hi seed 2"
    QCOMPARE(re[0].label, std::string("base"));
    QCOMPARE(re[0].run_ids, (std::vector<int64_t>{2, 5}));
    QCOMPARE(re[1].run_ids, (std::vector<int64_t>{3}));
    bool threw = false;
    try {
      group_runs(runs, {.by = GroupSpec::By::kName, .pattern = "("});
    } catch (const std::regex_error&) {
      threw = true;
    }
    QVERIFY(threw);
    // No grouping: every run alone.
    QCOMPARE(group_runs(runs, {}).size(), runs.size());
    // Identical configs: one group, said so.
    const auto same = group_runs({record(1, "a", 1e-3, 1), record(2, "b", 1e-3, 2)},
                                 {.by = GroupSpec::By::kConfigExceptSeed});
    QCOMPARE(same.size(), size_t(1));
    QCOMPARE(same[0].label, std::string("same config"));
  }

  // The groups table: n and mean ± std of the summary numbers per group of the
  // visible runs; the filter narrows it.
  void groups_table_shows_aggregates() {
    RunBrowser b(db_);
    QVERIFY(b.groups_table()->isHidden());
    b.set_grouping({.by = GroupSpec::By::kConfigExceptSeed});
    QVERIFY(!b.groups_table()->isHidden());
    QCOMPARE(b.group_box()->currentData().toString(), QString("config"));
    QTableWidget* t = b.groups_table();
    QCOMPARE(t->rowCount(), 3);
    QCOMPARE(t->item(0, RunBrowser::kGroupLabel)->text(), QString("learning_rate=0.001"));
    QCOMPARE(t->item(0, RunBrowser::kGroupRuns)->text(), QString("3"));
    // best 2.0, 2.1, 2.5: mean 2.2, sample std sqrt(0.07) = 0.2646.
    QCOMPARE(t->item(0, RunBrowser::kGroupBestEval)->text(), QString("2.2000 ± 0.2646"));
    QCOMPARE(t->item(0, RunBrowser::kGroupBestRange)->text(), QString("2.0000 – 2.5000"));
    // final 3.0, 3.2, 3.4: mean 3.2, std 0.2.
    QCOMPARE(t->item(0, RunBrowser::kGroupFinalLoss)->text(), QString("3.2000 ± 0.2000"));
    QCOMPARE(t->item(0, RunBrowser::kGroupIds)->text(),
             QString("#%1 #%2 #%3").arg(a_[0]).arg(a_[1]).arg(a_[2]));
    QCOMPARE(t->item(1, RunBrowser::kGroupBestEval)->text(), QString("1.8500 ± 0.0707"));
    QCOMPARE(t->item(2, RunBrowser::kGroupRuns)->text(), QString("1"));
    QCOMPARE(t->item(2, RunBrowser::kGroupBestEval)->text(), QString("3.0000 ± 0.0000"));
    b.search_box()->setText("high-lr");
    QCOMPARE(t->rowCount(), 1);
    QCOMPARE(b.visible_groups().front().run_ids, b_);
    b.search_box()->clear();
    QCOMPARE(t->rowCount(), 3);
    // Grouping by a config field: the box offers the fields that differ.
    QVERIFY(b.group_box()->findData("field:train.seed") >= 0);
    QVERIFY(b.group_box()->findData("field:train.learning_rate") >= 0);
    QVERIFY(b.group_box()->findData("field:train.warmup_steps") < 0);  // equal in every run
    b.set_grouping({.by = GroupSpec::By::kConfigField, .field = "train.seed"});
    QCOMPARE(t->rowCount(), 3);
    QCOMPARE(t->item(0, RunBrowser::kGroupLabel)->text(), QString("seed=1"));
    QCOMPARE(t->item(0, RunBrowser::kGroupRuns)->text(), QString("3"));
    // A bad pattern is reported, nothing grouped.
    b.set_grouping({.by = GroupSpec::By::kName, .pattern = "("});
    QVERIFY(!b.group_pattern_edit()->isHidden());
    QCOMPARE(t->rowCount(), 0);
    QVERIFY(b.message_label()->text().contains("Invalid name pattern"));
    b.set_grouping({});
    QVERIFY(b.groups_table()->isHidden());

    // The same through the box: "tags", then a name pattern typed in.
    auto pick = [&](const QString& data) {
      const int i = b.group_box()->findData(data);
      QVERIFY(i >= 0);
      b.group_box()->setCurrentIndex(i);
      emit b.group_box()->activated(i);
    };
    pick("tags");
    QCOMPARE(b.grouping().by, GroupSpec::By::kTags);
    QCOMPARE(t->rowCount(), 2);  // "ablation", "(no tags)"
    QCOMPARE(t->item(0, RunBrowser::kGroupLabel)->text(), QString("ablation"));
    pick("pattern");
    QVERIFY(!b.group_pattern_edit()->isHidden());
    b.group_pattern_edit()->setText("^(\\S+)");  // the first word
    emit b.group_pattern_edit()->editingFinished();
    QCOMPARE(b.grouping().pattern, std::string("^(\\S+)"));
    QCOMPARE(t->rowCount(), 3);  // "base", "high-lr", "solo"
    QCOMPARE(t->item(1, RunBrowser::kGroupIds)->text(), QString("#%1 #%2").arg(b_[0]).arg(b_[1]));
    pick("field:train.learning_rate");
    QCOMPARE(b.grouping().field, std::string("train.learning_rate"));
    QVERIFY(b.group_pattern_edit()->isHidden());
    QCOMPARE(t->rowCount(), 3);
    pick("none");
    QVERIFY(b.groups_table()->isHidden());
  }

  // Compared runs grouped: one mean line + band per group with exact values.
  void grouped_charts_draw_mean_and_band() {
    RunBrowser b(db_);
    b.resize(1400, 900);
    b.show();
    b.set_grouping({.by = GroupSpec::By::kConfigExceptSeed});
    std::vector<int64_t> ids = a_;
    ids.insert(ids.end(), b_.begin(), b_.end());
    b.select_runs(ids);
    ChartsPanel* c = b.charts();
    QCOMPARE(c->run_ids().size(), size_t(5));
    QVERIFY(c->grouped());
    QCOMPARE(c->groups().size(), size_t(2));
    c->redraw_now();
    PlotView* loss = c->loss_plot();
    QCOMPARE(loss->series_count(), 4);  // per group: mean train, mean eval
    QCOMPARE(loss->band_count(), 2);
    QCOMPARE(c->throughput_plot()->series_count(), 2);
    QCOMPARE(c->grad_norm_plot()->band_count(), 2);
    QVERIFY(loss->band_drawn_count(0) > 0);
    QVERIFY(!c->band_box()->isHidden());

    // Group 0 at step 10 (x = 11 steps taken): mean 4.0 - 0.1 + 0.2, band ± sqrt(0.07).
    const GroupCurve g0 = c->group_curve(0, "loss");
    QCOMPARE(g0.size(), size_t(40));
    QCOMPARE(g0.x[10], 11.0);
    QVERIFY(std::abs(g0.mean[10] - 4.1) < 1e-12);
    QVERIFY(std::abs(g0.std[10] - kStd) < 1e-12);
    QCOMPARE(g0.n[10], 3);
    // The drawn series and band hold these numbers (raw, before smoothing).
    const QList<QPointF> lower = loss->band_lower(0), upper = loss->band_upper(0);
    QVERIFY(std::abs(y_at(lower, 11) - (4.1 - kStd)) < 1e-9);
    QVERIFY(std::abs(y_at(upper, 11) - (4.1 + kStd)) < 1e-9);
    QCOMPARE(loss->point_count(0), qsizetype(40));
    QVERIFY(loss->readout_at(11).front().contains("learning_rate=0.001 train"));
    QVERIFY(loss->readout_at(11).front().contains("(raw 4.1)"));
    // Hovering the mean names its band (raw) and how many runs it averages.
    const QString hover = loss->readout_at(11).front();
    QVERIFY2(hover.contains(QString(" · band %1 – %2 · n=3")
                                .arg(QString::number(4.1 - kStd, 'g', 5))
                                .arg(QString::number(4.1 + kStd, 'g', 5))),
             qPrintable(hover));
    QVERIFY(loss->readout_at(20).at(2).contains("n=2"));  // group 1 at step 19: both runs
    QVERIFY(loss->readout_at(40).at(2).contains("n=1"));  // step 39: only the longer one
    // Group 1: the second run stops at step 24, so from step 25 on n = 1.
    const GroupCurve g1 = c->group_curve(1, "loss");
    QCOMPARE(g1.size(), size_t(40));
    QVERIFY(std::abs(g1.mean[10] - (2.9 + 0.1)) < 1e-12);
    QCOMPARE(g1.n[10], 2);
    QCOMPARE(g1.n[30], 1);
    QVERIFY(std::abs(g1.mean[30] - 2.7) < 1e-12);
    QCOMPARE(g1.std[30], 0.0);
    // Evals: group 0 at steps 19 and 39, mean offset 0.2 + 0.05.
    const GroupCurve e0 = c->group_curve(0, "eval_loss");
    QCOMPARE(e0.step, (std::vector<int64_t>{19, 39}));
    QVERIFY(std::abs(e0.mean[0] - (4.0 - 0.19 + 0.25)) < 1e-12);
    QCOMPARE(loss->point_count(1), qsizetype(2));

    // min/max band instead.
    c->band_box()->setCurrentIndex(int(ChartsPanel::Band::kMinMax));
    QCOMPARE(c->band(), ChartsPanel::Band::kMinMax);
    QVERIFY(std::abs(y_at(loss->band_lower(0), 11) - 3.9) < 1e-9);
    QVERIFY(std::abs(y_at(loss->band_upper(0), 11) - 4.4) < 1e-9);

    // Colours: a group's runs share one, groups differ; the table's names follow.
    QCOMPARE(c->color_of(a_[0]), c->color_of(a_[2]));
    QCOMPARE(c->color_of(b_[0]), c->color_of(b_[1]));
    QVERIFY(c->color_of(a_[0]) != c->color_of(b_[0]));
    QCOMPARE(c->color_of(a_[0]), c->group_color(0));
    QCOMPARE(b.groups_table()->item(0, RunBrowser::kGroupLabel)->foreground().color(),
             c->group_color(0));
    // One shared legend naming groups and their run counts.
    QVERIFY(!c->legend()->isHidden());
    QVERIFY2(c->legend()->text().contains("learning_rate=0.001&nbsp;(3&nbsp;runs)"),
             qPrintable(c->legend()->text()));
    // The second group's runs end at different steps: said in its entry.
    QVERIFY(c->legend()->text().contains("(2&nbsp;runs,&nbsp;1&nbsp;to&nbsp;step&nbsp;40)"));
    QVERIFY(c->legend()->text().contains("min–max"));
    QVERIFY(!loss->legend_visible());

    // The exported image's legend strip names the groups in their colours.
    const QString png = dir_.path() + "/groups.png";
    QVERIFY(c->export_image(png, QSize(1200, 800)));
    const QImage img(png);
    std::set<QRgb> swatches;  // palette colours along the strip: one per group, not per run
    for (int x = 0; x < img.width(); ++x)
      for (int k = 0; k < 12; ++k)
        if (img.pixel(x, 14) == qualitative_color(k).rgb()) swatches.insert(img.pixel(x, 14));
    QCOMPARE(swatches, (std::set<QRgb>{c->group_color(0).rgb(), c->group_color(1).rgb()}));

    // The tokens axis: x is tokens seen (128 per step).
    c->set_x_axis(ChartsPanel::XAxis::kTokens);
    QCOMPARE(c->group_curve(0, "loss").x[10], 128.0 * 11);
    c->set_x_axis(ChartsPanel::XAxis::kStep);

    // Ungrouping draws the five runs again.
    b.set_grouping({});
    QVERIFY(!c->grouped());
    QCOMPARE(loss->series_count(), 10);
    QCOMPARE(loss->band_count(), 0);
    QVERIFY(c->band_box()->isHidden());
    std::set<QRgb> colors;
    for (int64_t id : ids) colors.insert(c->color_of(id).rgb());
    QCOMPARE(colors.size(), size_t(5));
  }

  // Selecting a row of the groups table selects (and compares) its runs.
  void selecting_a_group_selects_its_runs() {
    RunBrowser b(db_);
    b.set_grouping({.by = GroupSpec::By::kName});
    QCOMPARE(b.groups_table()->rowCount(), 3);  // "base", "high-lr", "solo"
    QCOMPARE(b.groups_table()->item(1, RunBrowser::kGroupLabel)->text(), QString("high-lr"));
    b.groups_table()->selectRow(1);
    QCOMPARE(b.selected_ids(), b_);
    QCOMPARE(b.charts()->groups().size(), size_t(1));
    QCOMPARE(b.charts()->groups().front().label, QString("high-lr"));
    QCOMPARE(b.charts()->loss_plot()->band_count(), 1);
  }

  // Live steps of a grouped run re-aggregate its group.
  void live_appends_update_the_mean() {
    ChartsPanel c;
    for (int r = 0; r < 2; ++r) {
      RunCurves rc;
      rc.id = r + 1;
      rc.name = QString("run %1").arg(r + 1);
      for (int i = 0; i < 5; ++i) {
        StepMetrics m;
        m.step = i;
        m.loss = 1.0 + r;
        rc.add(m);
      }
      c.set_run(std::move(rc));
    }
    c.set_groups({{"both", {1, 2}}});
    QCOMPARE(c.group_curve(0, "loss").mean.back(), 1.5);
    StepMetrics m;
    m.step = 5;
    m.loss = 4.0;
    c.append_steps(1, {m});
    c.redraw_now();  // flushes the coalesced re-aggregation
    QCOMPARE(c.loss_plot()->point_count(0), qsizetype(6));
    QCOMPARE(c.group_curve(0, "loss").mean.back(), 4.0);  // only run 1 reached step 5
    QCOMPARE(c.group_curve(0, "loss").n.back(), 1);
  }
};

QTEST_MAIN(GroupsTest)
#include "gui_groups_test.moc"

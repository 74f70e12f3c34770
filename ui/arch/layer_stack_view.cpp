#include "arch/layer_stack_view.h"

#include <QApplication>
#include <QHelpEvent>
#include <QMouseEvent>
#include <QPainter>
#include <QToolTip>
#include <algorithm>

#include "arch/arch_edit.h"

namespace bl {

namespace {

constexpr int kMargin = 8;
constexpr int kLabelW = 58;   // "L10–23"
constexpr int kParamsW = 66;  // "181.5 k"
constexpr int kBadgeW = 40;   // "×12"
constexpr int kEndH = 30;     // embedding / head rows
constexpr int kRowH = 38;
constexpr int kGap = 5;

struct Colours {
  QColor fill, edge;
};
const Colours kAttention{QColor(0xbb, 0xde, 0xfb), QColor(0x1e, 0x88, 0xe5)};
const Colours kFfn{QColor(0xc8, 0xe6, 0xc9), QColor(0x43, 0xa0, 0x47)};
const Colours kNorm{QColor(0xec, 0xef, 0xf1), QColor(0x78, 0x90, 0x9c)};
const Colours kPosition{QColor(0xe1, 0xbe, 0xe7), QColor(0x8e, 0x24, 0xaa)};
const Colours kEmbed{QColor(0xff, 0xf9, 0xc4), QColor(0xf9, 0xa8, 0x25)};
const QColor kOverride(0xf5, 0x7c, 0x00);
const QColor kError(0xd3, 0x2f, 0x2f);
const QColor kSelected(0x15, 0x65, 0xc0);

QString human(double v) {
  if (v >= 1e9) return QString::number(v / 1e9, 'f', 2) + " G";
  if (v >= 1e6) return QString::number(v / 1e6, 'f', 2) + " M";
  if (v >= 1e3) return QString::number(v / 1e3, 'f', 1) + " k";
  return QString::number(v, 'f', 0);
}

QString short_norm(const std::string& n) {
  if (n == "layer_norm") return "LN";
  if (n == "rms_norm") return "RMS";
  return QString::fromStdString(n);
}

QString norm_text(const std::string& n) {
  if (n == "layer_norm") return "LayerNorm";
  if (n == "rms_norm") return "RMSNorm";
  return QString::fromStdString(n);
}

QString attention_text(const BlockConfig& b) {
  QString t = QString::fromStdString(b.attention) + QString(" · %1 heads").arg(b.n_heads);
  if (b.attention != "mha" && b.effective_n_kv_heads() != b.n_heads)
    t = QString::fromStdString(b.attention) +
        QString(" · %1q / %2kv").arg(b.n_heads).arg(b.effective_n_kv_heads());
  if (b.window_size) t += QString(" · win %1").arg(*b.window_size);
  if (b.qk_norm) t += " · qk-norm";
  return t;
}

bool absolute_position(const std::string& p) {
  return p == "learned" || p == "sinusoidal";
}

// Draws a tile with the first of `texts` (longest first) that fits, else the last elided.
void tile(QPainter& p, const QRectF& r, const Colours& c, const QStringList& texts,
          bool faded = false) {
  p.setPen(QPen(faded ? c.edge.lighter(160) : c.edge, 1.2));
  p.setBrush(faded ? c.fill.lighter(110) : c.fill);
  p.drawRoundedRect(r.adjusted(0.5, 0.5, -0.5, -0.5), 5, 5);
  p.setPen(faded ? QColor(0x9e, 0x9e, 0x9e) : QColor(0x21, 0x21, 0x21));
  const int room = int(r.width()) - 8;
  QString t = texts.last();
  for (const QString& cand : texts) {
    if (p.fontMetrics().horizontalAdvance(cand) <= room) {
      t = cand;
      break;
    }
  }
  // An elided stub ("le…", "ro…") says nothing: draw it only when at least
  // four characters survive; the tooltip and the editor name the component.
  const QString shown = p.fontMetrics().elidedText(t, Qt::ElideRight, room);
  if (shown == t || shown.size() >= 5) p.drawText(r, Qt::AlignCenter, shown);
}

}  // namespace

LayerStackView::LayerStackView(QWidget* parent) : QWidget(parent) {
  setObjectName("layer_stack");
  setMouseTracking(true);  // drags are tracked by pressed_, so button state never matters
  setFocusPolicy(Qt::ClickFocus);
  setAutoFillBackground(true);
  QPalette pal = palette();
  pal.setColor(QPalette::Window, Qt::white);
  setPalette(pal);
}

void LayerStackView::set_model(const ModelConfig& m) {
  model_ = m;
  layers_ = layer_blocks(m);
  const int64_t n = int64_t(layers_.size());
  if (first_ >= n) first_ = last_ = -1;
  if (last_ >= n) last_ = n - 1;
  rebuild_rows();
}

void LayerStackView::set_layer_params(const std::vector<int64_t>& params) {
  params_ = params;
  update();
}

void LayerStackView::set_error_layers(const std::set<int64_t>& layers) {
  error_layers_ = layers;
  rebuild_rows();
}

void LayerStackView::set_collapse(bool on) {
  collapse_ = on;
  rebuild_rows();
}

void LayerStackView::select(int64_t first, int64_t last) {
  const int64_t n = int64_t(layers_.size());
  if (first < 0 || n == 0) {
    first = last = -1;
  } else {
    first = std::clamp<int64_t>(first, 0, n - 1);
    last = std::clamp<int64_t>(last, first, n - 1);
  }
  if (first == first_ && last == last_) return;
  first_ = first;
  last_ = last;
  if (first_ < 0) anchor_ = -1;
  update();
  emit selection_changed(first_, last_);
}

void LayerStackView::rebuild_rows() {
  rows_.clear();
  std::vector<std::pair<int64_t, int64_t>> runs;
  if (collapse_) {
    runs = identical_runs(model_);
  } else {
    for (int64_t i = 0; i < int64_t(layers_.size()); ++i) runs.emplace_back(i, i);
  }
  for (auto [a, b] : runs) {
    Row r;
    r.first = a;
    r.last = b;
    const std::vector<std::string> diff = differing_fields(layers_[size_t(a)], model_.block);
    r.override_ = !diff.empty();
    QStringList names;
    for (const std::string& d : diff) names << QString::fromStdString(d);
    r.overrides = names.join(", ");
    for (int64_t i = a; i <= b; ++i) r.error = r.error || error_layers_.count(i) > 0;
    rows_.push_back(r);
  }
  updateGeometry();
  update();
}

int LayerStackView::top_of_rows() const {
  return kMargin + kEndH + kGap;
}

QRect LayerStackView::row_rect(int row) const {
  return QRect(kMargin, top_of_rows() + row * (kRowH + kGap), width() - 2 * kMargin, kRowH);
}

QString LayerStackView::repeat_label(int row) const {
  if (row < 0 || row >= int(rows_.size())) return {};
  const int64_t n = rows_[size_t(row)].last - rows_[size_t(row)].first + 1;
  return n > 1 ? QString("×%1").arg(n) : QString();
}

QSize LayerStackView::sizeHint() const {
  const int h = top_of_rows() + int(rows_.size()) * (kRowH + kGap) + kEndH + kMargin;
  return QSize(560, h);
}

QSize LayerStackView::minimumSizeHint() const {
  return QSize(380, sizeHint().height());
}

int LayerStackView::row_at(int y) const {
  for (int r = 0; r < int(rows_.size()); ++r) {
    const QRect rr = row_rect(r);
    if (y >= rr.top() - kGap / 2 && y <= rr.bottom() + kGap / 2) return r;
  }
  return -1;
}

int LayerStackView::drop_boundary(int y) const {
  for (int r = 0; r < int(rows_.size()); ++r)
    if (y < row_rect(r).center().y()) return r;
  return int(rows_.size());
}

void LayerStackView::paint_row(QPainter& p, int r) {
  const Row& row = rows_[size_t(r)];
  const BlockConfig& b = layers_[size_t(row.first)];
  const QRect rr = row_rect(r);
  const bool selected = first_ >= 0 && row.first <= last_ && row.last >= first_;

  // A selection covering only part of a collapsed row draws a dashed frame.
  const bool partial = selected && (row.first < first_ || row.last > last_);
  p.setPen(selected ? QPen(kSelected, 2, partial ? Qt::DashLine : Qt::SolidLine)
                    : QPen(QColor(0xdd, 0xdd, 0xdd), 1));
  p.setBrush(selected ? QColor(0xe3, 0xf2, 0xfd) : QColor(0xfa, 0xfa, 0xfa));
  p.drawRoundedRect(QRectF(rr).adjusted(1, 1, -1, -1), 6, 6);
  if (row.override_) {  // orange stripe on the left: this row overrides the shared block
    p.setPen(Qt::NoPen);
    p.setBrush(kOverride);
    p.drawRoundedRect(QRectF(rr.left() + 2, rr.top() + 3, 5, rr.height() - 6), 2, 2);
  }
  if (row.error) {
    p.setPen(QPen(kError, 2, Qt::DashLine));
    p.setBrush(Qt::NoBrush);
    p.drawRoundedRect(QRectF(rr).adjusted(2, 2, -2, -2), 6, 6);
  }

  // Layer label.
  QFont f = font();
  f.setBold(true);
  p.setFont(f);
  p.setPen(QColor(0x42, 0x42, 0x42));
  const QString label = row.first == row.last ? QString("L%1").arg(row.first)
                                              : QString("L%1–%2").arg(row.first).arg(row.last);
  p.drawText(QRect(rr.left() + 10, rr.top(), kLabelW - 10, rr.height()), Qt::AlignVCenter, label);

  // Component tiles, in data-flow order.
  const double x0 = rr.left() + kLabelW, x1 = rr.right() - kParamsW - kBadgeW;
  const double w = std::max(80.0, x1 - x0);
  const QRectF area(x0, rr.top() + 5, w, rr.height() - 10);
  struct Piece {
    double weight;
    const Colours* c;
    QStringList text;  // longest first
    bool faded;
  };
  const QStringList norm = {norm_text(b.norm), short_norm(b.norm)};
  const bool abs_pos = absolute_position(b.position);
  const QString att = QString::fromStdString(b.attention);
  const Piece n1{0.12, &kNorm, norm, false};
  const Piece at{0.38,
                 &kAttention,
                 {attention_text(b),
                  att + QString(" %1/%2").arg(b.n_heads).arg(b.effective_n_kv_heads()), att},
                 false};
  const Piece pos{0.11, &kPosition, {QString::fromStdString(b.position)}, abs_pos};
  const Piece ffn{
      0.27,
      &kFfn,
      {QString::fromStdString(b.ffn) + QString(" · %1").arg(b.d_ff),
       QString::fromStdString(b.ffn) + QString(" %1").arg(b.d_ff), QString::number(b.d_ff)},
      b.ffn == "none"};
  const Piece n2{0.12, &kNorm, norm, false};
  std::vector<Piece> pieces = b.pre_norm ? std::vector<Piece>{n1, at, pos, n2, ffn}
                                         : std::vector<Piece>{at, pos, n1, ffn, n2};
  f.setBold(false);
  p.setFont(f);
  const double gap = 3;
  double usable = area.width() - gap * double(pieces.size() - 1);
  // Narrow stacks draw the norms as thin unlabelled strips (the tooltip and
  // the editor name them) so attention and FFN keep readable labels.
  constexpr double kStrip = 12;
  const bool narrow = usable < 460;
  for (const Piece& pc : pieces)
    if (narrow && pc.c == &kNorm) usable -= kStrip;
  // Widths by weight, but a labelled tile never narrower than its shortest
  // label ("rope", "LN"): the attention and FFN tiles give up the room.
  std::vector<double> widths(pieces.size(), kStrip);
  {
    double fixed = 0, free_weight = 0;
    std::vector<bool> pinned(pieces.size(), false);
    for (size_t pass = 0; pass <= pieces.size(); ++pass) {  // each pass pins one more, or ends
      fixed = 0;
      free_weight = 0;
      for (size_t i = 0; i < pieces.size(); ++i) {
        if (narrow && pieces[i].c == &kNorm) continue;
        const double need = p.fontMetrics().horizontalAdvance(pieces[i].text.last()) + 10;
        if (pinned[i]) {
          fixed += need;
          widths[i] = need;
        } else {
          free_weight += pieces[i].weight;
        }
      }
      bool changed = false;
      for (size_t i = 0; i < pieces.size(); ++i) {
        if ((narrow && pieces[i].c == &kNorm) || pinned[i]) continue;
        widths[i] = std::max(0.0, usable - fixed) * pieces[i].weight / free_weight;
        const double need = p.fontMetrics().horizontalAdvance(pieces[i].text.last()) + 10;
        if (widths[i] < need && fixed + need < usable * 0.6) {
          pinned[i] = true;
          changed = true;
        }
      }
      if (!changed) break;
    }
  }
  double x = area.left();
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& pc = pieces[i];
    const bool strip = narrow && pc.c == &kNorm;
    const double pw = widths[i];
    tile(p, QRectF(x, area.top(), pw, area.height()), *pc.c, strip ? QStringList{""} : pc.text,
         pc.faded);
    x += pw + gap;
  }

  // ×N badge for collapsed repeats.
  const QString rep = repeat_label(r);
  if (!rep.isEmpty()) {
    const QRectF badge(x1 + 6, rr.top() + 9, kBadgeW - 10, rr.height() - 18);
    p.setPen(Qt::NoPen);
    p.setBrush(QColor(0x45, 0x5a, 0x64));
    p.drawRoundedRect(badge, 9, 9);
    f.setBold(true);
    p.setFont(f);
    p.setPen(Qt::white);
    p.drawText(badge, Qt::AlignCenter, rep);
    f.setBold(false);
    p.setFont(f);
  }
  if (size_t(row.first) < params_.size()) {
    p.setPen(QColor(0x61, 0x61, 0x61));
    const QString t = human(double(params_[size_t(row.first)]));  // per layer, also when ×N
    p.drawText(QRect(int(x1 + kBadgeW), rr.top(), kParamsW - 8, rr.height()),
               Qt::AlignVCenter | Qt::AlignRight, t);
  }
}

void LayerStackView::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.setRenderHint(QPainter::Antialiasing);
  const BlockConfig& base = model_.block;
  const int w = width() - 2 * kMargin;

  // Embedding row.
  const double x0 = kMargin + kLabelW;
  const double tiles_w = std::max(80.0, double(w - kLabelW - kParamsW - kBadgeW));
  p.setPen(QColor(0x42, 0x42, 0x42));
  p.drawText(QRect(kMargin + 10, kMargin, kLabelW, kEndH), Qt::AlignVCenter, "in");
  const QString emb = QString("token embedding · %1 × %2").arg(model_.vocab_size).arg(base.d_model);
  const QString emb_short = QString("embedding %1×%2").arg(model_.vocab_size).arg(base.d_model);
  if (absolute_position(base.position)) {
    tile(p, QRectF(x0, kMargin, tiles_w * 0.7, kEndH), kEmbed, {emb, emb_short});
    tile(p, QRectF(x0 + tiles_w * 0.7 + 3, kMargin, tiles_w * 0.3 - 3, kEndH), kPosition,
         {"+ " + QString::fromStdString(base.position) + " position",
          QString::fromStdString(base.position)});
  } else {
    tile(p, QRectF(x0, kMargin, tiles_w, kEndH), kEmbed, {emb, emb_short});
  }

  for (int r = 0; r < int(rows_.size()); ++r) paint_row(p, r);

  // Final norm and LM head.
  const int y = top_of_rows() + int(rows_.size()) * (kRowH + kGap);
  p.setPen(QColor(0x42, 0x42, 0x42));
  p.drawText(QRect(kMargin + 10, y, kLabelW, kEndH), Qt::AlignVCenter, "out");
  tile(p, QRectF(x0, y, tiles_w * 0.3, kEndH), kNorm,
       {"final " + norm_text(base.norm), norm_text(base.norm), short_norm(base.norm)});
  tile(p, QRectF(x0 + tiles_w * 0.3 + 3, y, tiles_w * 0.7 - 3, kEndH), kEmbed,
       model_.tie_embeddings ? QStringList{"LM head (tied to embedding)", "LM head (tied)"}
                             : QStringList{"LM head"});

  if (dragging_ && drop_row_ >= 0) {
    const int yy = drop_row_ < int(rows_.size())
                       ? row_rect(drop_row_).top() - kGap / 2 - 1
                       : row_rect(int(rows_.size()) - 1).bottom() + kGap / 2;
    p.setPen(QPen(kSelected, 3));
    p.drawLine(kMargin, yy, width() - kMargin, yy);
  }
}

void LayerStackView::mousePressEvent(QMouseEvent* e) {
  if (!interactive_ || e->button() != Qt::LeftButton) return;
  const int r = row_at(int(e->position().y()));
  if (r < 0) {
    select(-1, -1);
    return;
  }
  const Row& row = rows_[size_t(r)];
  if ((e->modifiers() & Qt::ShiftModifier) && anchor_ >= 0) {
    select(std::min(anchor_, row.first), std::max(anchor_, row.last));
    return;
  }
  const bool inside = first_ >= 0 && row.first >= first_ && row.last <= last_;
  if (!inside) select(row.first, row.last);
  if (!inside || anchor_ < 0) anchor_ = row.first;
  pressed_ = true;
  press_pos_ = e->position().toPoint();
}

void LayerStackView::mouseMoveEvent(QMouseEvent* e) {
  if (!pressed_ || first_ < 0) return;
  if (!dragging_ &&
      (e->position().toPoint() - press_pos_).manhattanLength() < QApplication::startDragDistance())
    return;
  dragging_ = true;
  drop_row_ = drop_boundary(int(e->position().y()));
  update();
}

void LayerStackView::mouseReleaseEvent(QMouseEvent* e) {
  if (!pressed_) return;
  pressed_ = false;
  if (!dragging_) {  // a plain click inside a multi-row selection selects that row
    const int r = row_at(int(e->position().y()));
    if (r >= 0 && !(e->modifiers() & Qt::ShiftModifier)) {
      select(rows_[size_t(r)].first, rows_[size_t(r)].last);
      anchor_ = rows_[size_t(r)].first;
    }
    return;
  }
  dragging_ = false;
  const int b = drop_boundary(int(e->position().y()));
  drop_row_ = -1;
  update();
  const int64_t boundary = b < int(rows_.size()) ? rows_[size_t(b)].first : int64_t(layers_.size());
  const int64_t count = last_ - first_ + 1;
  int64_t to = -1;
  if (boundary > last_ + 1)
    to = boundary - count;
  else if (boundary < first_)
    to = boundary;
  if (to >= 0) emit move_requested(first_, last_, to);
}

bool LayerStackView::event(QEvent* e) {
  if (e->type() == QEvent::ToolTip) {
    auto* he = static_cast<QHelpEvent*>(e);
    const int r = row_at(he->pos().y());
    if (r < 0) {
      QToolTip::hideText();
      return true;
    }
    const Row& row = rows_[size_t(r)];
    const BlockConfig& b = layers_[size_t(row.first)];
    QString t = row.first == row.last
                    ? QString("Layer %1").arg(row.first)
                    : QString("Layers %1–%2 (identical)").arg(row.first).arg(row.last);
    t += "\n" +
         QString::fromStdString(b.attention + " / " + b.ffn + " / " + b.norm + " / " + b.position);
    if (size_t(row.first) < params_.size())
      t += "\n" + human(double(params_[size_t(row.first)])) + " parameters per layer";
    if (row.override_) t += "\nOverrides the shared block: " + row.overrides;
    if (absolute_position(b.position))
      t += "\nAbsolute positions are added once at the input (from the shared block).";
    QToolTip::showText(he->globalPos(), t, this);
    return true;
  }
  return QWidget::event(e);
}

}  // namespace bl

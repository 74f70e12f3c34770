#include "arch/field_widget.h"

#include <QCheckBox>
#include <QDoubleSpinBox>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QVariant>
#include <algorithm>
#include <cmath>

namespace bl {

namespace {
// Values that span decades (eps, rope θ) need a field that shows 1e-05 as such.
class SciSpinBox : public QDoubleSpinBox {
 public:
  using QDoubleSpinBox::QDoubleSpinBox;
  QString textFromValue(double v) const override { return QString::number(v, 'g', 6); }
  double valueFromText(const QString& t) const override { return t.toDouble(); }
  QValidator::State validate(QString& t, int&) const override {
    bool ok = false;
    t.toDouble(&ok);
    return ok ? QValidator::Acceptable : QValidator::Intermediate;
  }
  void stepBy(int steps) override { setValue(value() * std::pow(10.0, steps)); }
};
}  // namespace

QWidget* make_field_widget(const BlockField& f, std::function<void(double)> on_edit) {
  QWidget* w = nullptr;
  switch (f.kind) {
    case BlockField::Kind::kBool: {
      auto* c = new QCheckBox;
      QObject::connect(c, &QCheckBox::toggled, c, [on_edit](bool on) { on_edit(on ? 1 : 0); });
      w = c;
      break;
    }
    case BlockField::Kind::kInt:
    case BlockField::Kind::kOptInt: {
      auto* s = new QSpinBox;
      s->setRange(int(f.lo), int(std::min(f.hi, 2e9)));
      s->setKeyboardTracking(false);  // one edit per committed value, not per digit
      if (f.kind == BlockField::Kind::kOptInt) s->setSpecialValueText("unset");
      QObject::connect(s, &QSpinBox::valueChanged, s, [on_edit](int v) { on_edit(v); });
      w = s;
      break;
    }
    case BlockField::Kind::kDouble: {
      QDoubleSpinBox* s = f.key == "dropout" ? new QDoubleSpinBox : new SciSpinBox;
      s->setDecimals(f.key == "dropout" ? 3 : 12);
      if (f.key == "dropout") s->setSingleStep(0.05);
      s->setRange(f.lo, f.hi);
      s->setKeyboardTracking(false);
      QObject::connect(s, &QDoubleSpinBox::valueChanged, s, [on_edit](double v) { on_edit(v); });
      w = s;
      break;
    }
  }
  w->setObjectName(QString::fromStdString(f.key));
  return w;
}

void set_field_value(QWidget* w, const BlockField& f, double v) {
  const QSignalBlocker block(w);
  if (auto* c = qobject_cast<QCheckBox*>(w))
    c->setChecked(v != 0);
  else if (auto* s = qobject_cast<QSpinBox*>(w))
    s->setValue(int(std::llround(v)));
  else if (auto* d = qobject_cast<QDoubleSpinBox*>(w))
    d->setValue(v);
  (void)f;
}

double field_value(const QWidget* w, const BlockField& f) {
  (void)f;
  if (auto* c = qobject_cast<const QCheckBox*>(w)) return c->isChecked() ? 1 : 0;
  if (auto* s = qobject_cast<const QSpinBox*>(w)) return s->value();
  if (auto* d = qobject_cast<const QDoubleSpinBox*>(w)) return d->value();
  return 0;
}

void mark_field(QWidget* w, const QString& error) {
  const bool bad = !error.isEmpty();
  if (w->property("invalid").toBool() == bad && w->toolTip() == error) return;
  w->setProperty("invalid", bad);
  w->setToolTip(error);
  // A palette tint, not a style sheet: style sheets replace the native spin arrows.
  if (!bad) {
    w->setPalette(QPalette());  // inherit again
    return;
  }
  QPalette pal = w->palette();
  pal.setColor(QPalette::Base, QColor(0xff, 0xcd, 0xd2));
  pal.setColor(QPalette::Button, QColor(0xff, 0xcd, 0xd2));
  pal.setColor(QPalette::Text, QColor(0xb7, 0x1c, 0x1c));
  pal.setColor(QPalette::ButtonText, QColor(0xb7, 0x1c, 0x1c));
  w->setPalette(pal);
}

}  // namespace bl

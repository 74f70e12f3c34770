// One editor widget per BlockField kind (spin box, double spin box, check
// box), shared by the model form and the block editor so both look and
// commit values the same way: once per committed value, not per keystroke.
#pragma once

#include <QWidget>
#include <functional>

#include "arch/arch_edit.h"

namespace bl {

/// Creates the widget for `f`; `on_edit` runs with the new value on user edits.
QWidget* make_field_widget(const BlockField& f, std::function<void(double)> on_edit);
/// Shows `v` without triggering on_edit.
void set_field_value(QWidget* w, const BlockField& f, double v);
/// The widget's current value.
double field_value(const QWidget* w, const BlockField& f);
/// Red frame + tooltip for an invalid field; clears with an empty message.
void mark_field(QWidget* w, const QString& error);

}  // namespace bl

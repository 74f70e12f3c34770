// Collapses validation messages that differ only in the layer index
// ("block_configs[0].d_model ...", "block_configs[1].d_model ...") into one
// line naming the layers and the count: one bad d_model on jamba-tiny gave 11
// near-identical lines in both the Composer and the Run panel.
#pragma once

#include <QString>
#include <QStringList>
#include <string>
#include <vector>

namespace bl {

/// One line per distinct message, in first-seen order; a message repeated for
/// several layers reads "block_configs[0–3, 5].d_model ... (×5 layers)".
QStringList group_errors(const std::vector<std::string>& errors);

}  // namespace bl

#include "arch/error_groups.h"

#include <QRegularExpression>
#include <algorithm>
#include <map>
#include <vector>

namespace bl {

namespace {

/// "0–3, 5, 7–8" from sorted, distinct layer indices.
QString ranges(const std::vector<long long>& v) {
  QStringList parts;
  for (size_t i = 0; i < v.size();) {
    size_t j = i;
    while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
    parts << (j == i ? QString::number(v[i])
                     : QString("%1–%2").arg(v[i]).arg(v[j]));  // en dash: a range
    i = j + 1;
  }
  return parts.join(", ");
}

}  // namespace

QStringList group_errors(const std::vector<std::string>& errors) {
  static const QRegularExpression layer_re(R"(block_configs\[(\d+)\])");
  struct Group {
    QString pattern;  // the message with its layer index replaced by a marker
    std::vector<long long> layers;
    QString first;  // the first message as written (used when it is alone)
  };
  std::vector<Group> groups;
  std::map<QString, size_t> index;
  for (const std::string& e : errors) {
    const QString line = QString::fromStdString(e);
    // Grouped when every layer reference names the same layer
    // ("block_configs[3].d_model ... block_configs[3].n_heads"); the marker
    // cannot occur in a message.
    long long layer = -1;
    bool one_layer = true;
    for (auto it = layer_re.globalMatch(line); it.hasNext();) {
      const long long l = it.next().captured(1).toLongLong();
      one_layer = one_layer && (layer < 0 || l == layer);
      layer = l;
    }
    one_layer = one_layer && layer >= 0;
    QString key = line;
    if (one_layer) key.replace(layer_re, "block_configs[\x01]");
    auto [it, fresh] = index.try_emplace(key, groups.size());
    if (fresh) groups.push_back({key, {}, line});
    if (one_layer) groups[it->second].layers.push_back(layer);
  }
  QStringList out;
  for (Group& g : groups) {
    std::sort(g.layers.begin(), g.layers.end());
    g.layers.erase(std::unique(g.layers.begin(), g.layers.end()), g.layers.end());
    if (g.layers.size() <= 1) {
      out << g.first;
      continue;
    }
    QString line = g.pattern;
    line.replace("block_configs[\x01]", "block_configs[" + ranges(g.layers) + "]");
    out << QString("%1 (×%2 layers)").arg(line).arg(g.layers.size());
  }
  return out;
}

}  // namespace bl

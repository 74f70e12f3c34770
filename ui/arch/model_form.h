// Model-level form: vocab_size (read-only, follows the corpus tokenizer),
// n_layers, tie_embeddings, init_std and the shared block's model-wide fields
// (d_model, heads, d_ff, max_seq_len, dropout, ...). Block fields edited here
// go to every layer that does not override them.
#pragma once

#include <QWidget>
#include <map>
#include <string>

#include "core/config.h"

class QLabel;
class QSpinBox;

namespace bl {

class ModelForm : public QWidget {
  Q_OBJECT

 public:
  explicit ModelForm(QWidget* parent = nullptr);

  /// Shows `m` without emitting signals.
  void set_model(const ModelConfig& m);
  /// Fields (keys as in the engine's errors) named by validation errors.
  void mark_invalid(const std::map<std::string, QString>& errors);
  void set_editable(bool on);

  /// Widget of a field by key ("n_layers", "d_model", "tie_embeddings", ...).
  QWidget* field(const std::string& key) const;
  QSpinBox* spin(const std::string& key) const;

 signals:
  /// A shared-block field (BlockField key) was edited.
  void block_field_edited(const QString& key, double value);
  /// A ModelConfig field (n_layers, tie_embeddings, init_std) was edited.
  void model_field_edited(const QString& key, double value);

 private:
  QLabel* vocab_;
  std::map<std::string, QWidget*> fields_;
  BlockConfig block_;  // shown shared block: decides which fields are enabled
  bool editable_ = true;
};

}  // namespace bl

#include "arch/model_form.h"

#include <QFormLayout>
#include <QLabel>
#include <QSpinBox>

#include "arch/arch_edit.h"
#include "arch/field_widget.h"

namespace bl {

namespace {
// ModelConfig's own fields, described like block fields so they share widgets.
const std::vector<BlockField>& model_fields() {
  static const std::vector<BlockField> f = {
      {"n_layers", "n_layers", BlockField::Kind::kInt, Slot::kAttention, 1, 1024, nullptr, nullptr,
       nullptr},
      {"tie_embeddings", "tie_embeddings", BlockField::Kind::kBool, Slot::kAttention, 0, 1, nullptr,
       nullptr, nullptr},
      {"init_std", "init_std", BlockField::Kind::kDouble, Slot::kAttention, 1e-6, 10, nullptr,
       nullptr, nullptr},
  };
  return f;
}

// Shared-block fields in the form, in display order.
const char* const kBlockKeys[] = {"d_model",     "n_heads",  "n_kv_heads", "d_ff",
                                  "max_seq_len", "dropout",  "norm_eps",   "rope_theta",
                                  "bias",        "pre_norm", "qk_norm"};
}  // namespace

ModelForm::ModelForm(QWidget* parent) : QWidget(parent) {
  setObjectName("model_form");
  auto* form = new QFormLayout(this);
  form->setContentsMargins(0, 0, 0, 0);
  form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
  vocab_ = new QLabel;
  vocab_->setObjectName("vocab_size");
  vocab_->setToolTip("vocab_size follows the corpus tokenizer when training starts");
  form->addRow("vocab_size", vocab_);
  auto add = [&](const BlockField& f, bool model_level) {
    const QString key = QString::fromStdString(f.key);
    QWidget* w = make_field_widget(f, [this, key, model_level](double v) {
      if (model_level)
        emit model_field_edited(key, v);
      else
        emit block_field_edited(key, v);
    });
    fields_[f.key] = w;
    form->addRow(QString::fromStdString(f.key), w);
  };
  add(model_fields()[0], true);
  for (const char* k : kBlockKeys) add(*find_block_field(k), false);
  add(model_fields()[1], true);
  add(model_fields()[2], true);
  spin("n_kv_heads")->setSpecialValueText("= n_heads");
}

void ModelForm::set_model(const ModelConfig& m) {
  vocab_->setText(QString("%1 <span style='color:#757575'>· corpus</span>").arg(m.vocab_size));
  set_field_value(fields_["n_layers"], model_fields()[0], double(m.n_layers));
  set_field_value(fields_["tie_embeddings"], model_fields()[1], m.tie_embeddings ? 1 : 0);
  set_field_value(fields_["init_std"], model_fields()[2], m.init_std);
  for (const char* k : kBlockKeys) {
    const BlockField& f = *find_block_field(k);
    QWidget* w = fields_[k];
    set_field_value(w, f, f.get(m.block));
    // Fields the shared components do not read stay visible but disabled.
    w->setEnabled(editable_ && f.used(m.block));
    if (!f.used(m.block) && !w->property("invalid").toBool())
      w->setToolTip(QString("not used by attention '%1' / position '%2'")
                        .arg(QString::fromStdString(m.block.attention),
                             QString::fromStdString(m.block.position)));
  }
  block_ = m.block;
}

void ModelForm::mark_invalid(const std::map<std::string, QString>& errors) {
  for (auto& [key, w] : fields_) {
    auto it = errors.find(key);
    mark_field(w, it == errors.end() ? QString() : it->second);
  }
}

void ModelForm::set_editable(bool on) {
  editable_ = on;
  for (auto& [k, w] : fields_) {
    const BlockField* f = find_block_field(k);
    w->setEnabled(on && (!f || f->used(block_)));
  }
}

QWidget* ModelForm::field(const std::string& key) const {
  auto it = fields_.find(key);
  return it == fields_.end() ? nullptr : it->second;
}

QSpinBox* ModelForm::spin(const std::string& key) const {
  return qobject_cast<QSpinBox*>(field(key));
}

}  // namespace bl

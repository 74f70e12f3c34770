// Knowledge-distillation loss (Hinton et al. 2015): the student's hard-label
// cross-entropy mixed with the temperature-softened KL divergence from a
// teacher's distribution, scaled by T^2 so its gradient keeps the CE's size.
#pragma once

#include "ops/embedding.h"
#include "tensor/tensor.h"

namespace bl {

/// Mean over rows with a target >= 0 of KL(softmax(teacher/T) || softmax(student/T)),
/// shape (1). student and teacher are (..., V) with the same shape; the teacher is
/// a constant (no gradient flows to it). Backward: d/dstudent = (p_s - p_t) / (T * N)
/// with p = softmax(logits / T). Throws "[distill_kl] ..." on mismatched shapes,
/// T <= 0 or a target >= V.
Tensor distill_kl(const Tensor& student, const Tensor& teacher, const Tokens& targets,
                  float temperature);

/// The parts of the last distill_loss, for metrics.
struct DistillParts {
  double ce = 0;  // hard-label cross-entropy
  double kl = 0;  // KL at temperature T (before the T^2 factor)
};

/// alpha * CE(student, targets) + (1 - alpha) * T^2 * distill_kl(...), shape (1).
/// alpha = 1 is cross_entropy itself (the same kernel and value, bit for bit);
/// the term with weight 0 is still computed for `parts`, without a gradient.
/// Throws "[distill_loss] ..." for T <= 0 or alpha outside [0, 1].
Tensor distill_loss(const Tensor& student, const Tensor& teacher, const Tokens& targets,
                    float temperature, float alpha, DistillParts* parts = nullptr);

}  // namespace bl

// JSON Lines as the DPO pairs and GRPO prompts files use them: one object per
// non-blank line, each mistake named by "FILE:LINE".
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace bl {

/// Calls f(object, "SOURCE:LINE") for each non-blank line of `text`, in order.
/// A line that is not a JSON object throws std::invalid_argument
/// "SOURCE:LINE: not a JSON object (each line is SHAPE)".
void for_each_jsonl_object(
    std::string_view text, const std::string& source, const char* shape,
    const std::function<void(const nlohmann::json& object, const std::string& where)>& f);

}  // namespace bl

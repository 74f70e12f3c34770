#include "data/prompt_data.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "data/jsonl.h"
#include "data/tokenizer.h"

namespace bl {

PromptSet::PromptSet(std::string_view jsonl, const std::string& source, const Tokenizer& tok,
                     double val_fraction) {
  if (!(val_fraction >= 0 && val_fraction < 1))
    throw std::invalid_argument("val_fraction must be in [0, 1)");
  std::vector<PromptItem> all;
  const char* shape = "{\"prompt\": ..., \"target\": ...}";
  for_each_jsonl_object(
      jsonl, source, shape, [&](const nlohmann::json& j, const std::string& where) {
        PromptItem item;
        for (const char* key : {"prompt", "target"}) {
          auto it = j.find(key);
          if (it == j.end()) continue;
          if (!it->is_string())
            throw std::invalid_argument(where + ": \"" + key + "\" must be a string, got " +
                                        std::string(it->type_name()));
          (std::string(key) == "prompt" ? item.text : item.target) = it->get<std::string>();
        }
        if (item.text.empty())
          throw std::invalid_argument(where + ": \"prompt\" is missing or empty");
        if (!j.contains("target")) all_targets_ = false;
        try {
          item.ids = tok.encode(item.text);
          tok.encode(item.target);  // a target the model could never write is a data error
        } catch (const std::exception& e) {
          throw std::invalid_argument(where + ": cannot be encoded with the " + tok.name() +
                                      " tokenizer: " + e.what());
        }
        if (item.ids.empty())
          throw std::invalid_argument(where + ": the prompt encodes to no tokens");
        text_ += item.text + item.target + "\n";
        all.push_back(std::move(item));
      });
  if (all.size() < 2)
    throw std::invalid_argument(source + ": " + std::to_string(all.size()) +
                                " prompt(s); GRPO needs at least 2 (one validates)");
  const int64_t n = int64_t(all.size());
  const int64_t n_val = std::clamp<int64_t>(int64_t(std::ceil(val_fraction * double(n))), 1, n - 1);
  train_.assign(std::make_move_iterator(all.begin()), std::make_move_iterator(all.end() - n_val));
  val_.assign(std::make_move_iterator(all.end() - n_val), std::make_move_iterator(all.end()));
}

}  // namespace bl

#include "data/jsonl.h"

#include <stdexcept>

namespace bl {

void for_each_jsonl_object(
    std::string_view text, const std::string& source, const char* shape,
    const std::function<void(const nlohmann::json& object, const std::string& where)>& f) {
  size_t pos = 0;
  int64_t line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = source + ":" + std::to_string(line_no);
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw std::invalid_argument(where + ": not a JSON object (each line is " + shape + ")");
    f(j, where);
  }
}

}  // namespace bl

// Fuzzes adapter_config.json of a PEFT adapter directory whose safetensors is
// a fixed valid rank-2 adapter of one layer, so the config's rank / alpha
// patterns are checked against real tensors.
#include <vector>

#include "fuzz_util.h"
#include "io/safetensors.h"
#include "lora/adapter_io.h"

namespace {
const std::filesystem::path& adapter_dir() {
  static const std::filesystem::path dir = [] {
    auto d = bl::fuzz::scratch_dir() / "adapter";
    std::filesystem::create_directories(d);
    static const std::vector<float> a(2 * 8, 0.5f), b(8 * 2, 0.25f);
    const std::string p = "base_model.model.model.layers.0.self_attn.";
    bl::write_safetensors((d / "adapter_model.safetensors").string(),
                          {{p + "q_proj.lora_A.weight", {2, 8}, a.data()},
                           {p + "q_proj.lora_B.weight", {8, 2}, b.data()}});
    return d;
  }();
  return dir;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& dir = adapter_dir();
  bl::fuzz::write_file(dir / "adapter_config.json", data, size);
  bl::fuzz::expect_clean_naming([&] { bl::read_peft_adapter(dir.string()); }, dir.string());
  return 0;
}

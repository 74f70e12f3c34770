// `blocklab-cli models`: what the registry, the presets and the published
// architectures offer, and exact parameter / FLOP counts of any of them.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "args.h"
#include "commands.h"
#include "core/components.h"
#include "core/model_report.h"
#include "core/presets.h"

namespace bl::cli {

namespace {

std::string human(double n) {
  char buf[32];
  const char* unit[] = {"", "K", "M", "B", "T"};
  int u = 0;
  while (n >= 1000 && u < 4) {
    n /= 1000;
    ++u;
  }
  std::snprintf(buf, sizeof buf, u ? "%.2f%s" : "%.0f%s", n, unit[u]);
  return buf;
}

template <class R>
void list_slot(const R& reg) {
  std::printf("%s:\n", reg.slot().c_str());
  for (const std::string& n : reg.names()) {
    const auto& e = reg.entry(n);
    std::string fields;
    for (const std::string& f : e.fields) fields += (fields.empty() ? " [" : ", ") + f;
    if (!fields.empty()) fields += "]";
    std::printf("  %-20s %s%s\n", n.c_str(), e.summary.c_str(), fields.c_str());
  }
}

// A preset name, an architecture name, or a config/preset file path.
Preset resolve(const std::string& name, std::string& kind) {
  for (const std::string& n : preset_names())
    if (n == name) return kind = "preset", load_preset(name);
  for (const std::string& n : architecture_names())
    if (n == name) return kind = "architecture", load_architecture(name);
  if (name.find('/') != std::string::npos || name.ends_with(".json"))
    return kind = "file", load_preset_file(name);
  std::string known;
  for (const std::string& n : preset_names()) known += (known.empty() ? "" : ", ") + n;
  for (const std::string& n : architecture_names()) known += ", " + n;
  throw UsageError("unknown model '" + name + "'; known: " + known + " (or a .json file)");
}

nlohmann::ordered_json report_json(const std::string& name, const Preset& p, const ModelReport& r,
                                   bool detail) {
  nlohmann::ordered_json j;
  j["name"] = name;
  j["params"] = r.params;
  j["active_params"] = r.active_params;
  j["embedding_params"] = r.embedding_params;
  j["mtp_params"] = r.mtp_params;
  j["seq_len"] = r.seq_len;
  j["train_flops_per_token"] = r.flops_per_token;
  j["n_layers"] = p.model.n_layers;
  for (const LayerTypeStats& t : r.by_type)
    j["layer_types"].push_back({{"attention", t.attention},
                                {"ffn", t.ffn},
                                {"layers", t.layers},
                                {"params", t.params},
                                {"active_params", t.active_params},
                                {"train_flops_per_token", t.flops_per_token}});
  if (detail)
    for (size_t i = 0; i < r.layers.size(); ++i) {
      const LayerStats& s = r.layers[i];
      j["layers"].push_back({{"layer", i},
                             {"attention", s.attention},
                             {"ffn", s.ffn},
                             {"params", s.params},
                             {"active_params", s.active_params},
                             {"train_flops_per_token", s.flops_per_token}});
    }
  return j;
}

void print_report(const std::string& name, const Preset& p, const ModelReport& r, bool detail) {
  std::printf("%s: %s parameters (%lld), %s active per token, %s embedding", name.c_str(),
              human(double(r.params)).c_str(), (long long)r.params,
              human(double(r.active_params)).c_str(), human(double(r.embedding_params)).c_str());
  if (r.mtp_params) std::printf(", %s in MTP heads", human(double(r.mtp_params)).c_str());
  std::printf("\ntraining FLOPs per token at context %lld: %s (%.4g)\n", (long long)r.seq_len,
              human(r.flops_per_token).c_str(), r.flops_per_token);
  std::printf("\n%-20s %-14s %6s %14s %14s %14s\n", "attention", "ffn", "layers", "params",
              "active", "FLOPs/token");
  for (const LayerTypeStats& t : r.by_type)
    std::printf("%-20s %-14s %6lld %14lld %14lld %14.4g\n", t.attention.c_str(), t.ffn.c_str(),
                (long long)t.layers, (long long)t.params, (long long)t.active_params,
                t.flops_per_token);
  if (!detail) return;
  std::printf("\n%5s %-20s %-14s %14s %14s %14s\n", "layer", "attention", "ffn", "params", "active",
              "FLOPs/token");
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const LayerStats& s = r.layers[i];
    std::printf("%5zu %-20s %-14s %14lld %14lld %14.4g\n", i, s.attention.c_str(), s.ffn.c_str(),
                (long long)s.params, (long long)s.active_params, s.flops_per_token);
  }
  (void)p;
}

}  // namespace

int models_command(const std::vector<std::string>& argv) {
  if (argv.empty())
    throw UsageError("models needs a subcommand: list | info NAME | count NAME | import hf DIR");
  const std::string sub = argv[0];
  if (sub == "import") return models_import_command({argv.begin() + 1, argv.end()});
  Args args(std::vector<std::string>(argv.begin() + 1, argv.end()), {"seq-len"},
            {"detail", "json"});
  const bool json = args.flag("json");
  if (sub == "list") {
    if (!args.positional().empty()) throw UsageError("models list takes no argument");
    if (json) {
      nlohmann::ordered_json j;
      auto slot = [&](const auto& reg) {
        for (const std::string& n : reg.names())
          j["components"][reg.slot()].push_back(
              {{"name", n}, {"summary", reg.entry(n).summary}, {"fields", reg.entry(n).fields}});
      };
      slot(attention_registry());
      slot(ffn_registry());
      slot(norm_registry());
      slot(position_registry());
      for (const std::string& n : preset_names()) {
        Preset p = load_preset(n);
        j["presets"].push_back({{"name", n},
                                {"description", p.description},
                                {"params", report_model(p.model, p.train.seq_len).params}});
      }
      for (const std::string& n : architecture_names()) {
        Preset p = load_architecture(n);
        j["architectures"].push_back({{"name", n},
                                      {"description", p.description},
                                      {"params", report_model(p.model, p.train.seq_len).params}});
      }
      std::printf("%s\n", j.dump().c_str());
      return 0;
    }
    std::printf("components (name, summary, [its own config fields]):\n");
    list_slot(attention_registry());
    list_slot(ffn_registry());
    list_slot(norm_registry());
    list_slot(position_registry());
    std::printf("\npresets (tiny, train on this machine):\n");
    for (const std::string& n : preset_names()) {
      Preset p = load_preset(n);
      std::printf("  %-20s %9s  %s\n", n.c_str(),
                  human(double(report_model(p.model, p.train.seq_len).params)).c_str(),
                  p.description.c_str());
    }
    std::printf("\narchitectures (published shapes, for counting):\n");
    for (const std::string& n : architecture_names()) {
      Preset p = load_architecture(n);
      std::printf("  %-20s %9s  %s\n", n.c_str(),
                  human(double(report_model(p.model, p.train.seq_len).params)).c_str(),
                  p.description.c_str());
    }
    return 0;
  }
  if (sub != "info" && sub != "count")
    throw UsageError("unknown models subcommand '" + sub + "'; known: list, info, count, import");
  if (args.positional().size() != 1) throw UsageError("models " + sub + " needs one NAME");
  const std::string name = args.positional()[0];
  std::string kind;
  Preset p = resolve(name, kind);
  const int64_t seq_len = args.get_int("seq-len", 1).value_or(p.train.seq_len);
  ModelReport r = report_model(p.model, seq_len);
  if (sub == "count") {
    if (json)
      std::printf("%s\n", report_json(name, p, r, args.flag("detail")).dump().c_str());
    else
      print_report(name, p, r, args.flag("detail"));
    return 0;
  }
  // info: description, the config, and the summary counts.
  if (json) {
    nlohmann::ordered_json j = report_json(name, p, r, false);
    j["kind"] = kind;
    j["description"] = p.description;
    j["config"] = preset_to_json(p);
    std::printf("%s\n", j.dump().c_str());
    return 0;
  }
  std::printf("%s (%s): %s\n\n", name.c_str(), kind.c_str(), p.description.c_str());
  std::printf("%s\n\n", preset_to_json(p).dump(2).c_str());
  print_report(name, p, r, false);
  return 0;
}

}  // namespace bl::cli

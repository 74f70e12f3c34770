#include "train/checkpoint.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "io/safetensors.h"
#include "train/trainer.h"

namespace bl {

namespace fs = std::filesystem;

namespace {
std::vector<TensorView> weight_views(LanguageModel& model) {
  std::vector<TensorView> v;
  for (auto& [name, p] : model.named_parameters()) {
    bool dup = false;
    for (auto& t : v) dup |= t.data == p->data();
    if (dup) continue;  // tied weights are stored once
    TensorView t;
    t.name = name;
    for (int i = 0; i < p->shape().rank; ++i) t.shape.push_back(p->shape()[i]);
    t.data = p->data();
    v.push_back(std::move(t));
  }
  return v;
}

nlohmann::json rng_json(const std::array<uint64_t, 4>& s) {
  // As strings: JSON readers may lose precision on 64-bit integers.
  nlohmann::json a = nlohmann::json::array();
  for (uint64_t x : s) a.push_back(std::to_string(x));
  return a;
}
std::array<uint64_t, 4> rng_from_json(const nlohmann::json& a) {
  std::array<uint64_t, 4> s{};
  for (size_t i = 0; i < 4; ++i) s[i] = std::stoull(a.at(i).get<std::string>());
  return s;
}
}  // namespace

void save_checkpoint(const std::string& dir, LanguageModel& model, const TrainConfig& train,
                     const Tokenizer& tok, Trainer* trainer) {
  fs::path final_dir(dir);
  fs::path tmp = final_dir;
  tmp += ".tmp";
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw std::runtime_error("cannot create checkpoint directory " + tmp.string() + ": " + ec.message());
  write_safetensors((tmp / "model.safetensors").string(), weight_views(model),
                    {{"format", "blocklab"}, {"step", std::to_string(trainer ? trainer->step() : 0)}});
  nlohmann::json info = {{"format", "blocklab-checkpoint"},
                         {"version", 1},
                         {"model", model_config_to_json(model.config())},
                         {"train", train_config_to_json(train)},
                         {"tokenizer", tok.to_json()},
                         {"step", trainer ? trainer->step() : 0}};
  if (trainer) {
    NamedBuffers state = trainer->optimizer().state();
    std::vector<TensorView> views;
    for (auto& [name, buf] : state) views.push_back({name, {int64_t(buf.size())}, buf.data()});
    write_safetensors((tmp / "optimizer.safetensors").string(), views,
                      {{"optimizer", trainer->optimizer().name()}});
    BatchSampler::State s = trainer->sampler().state();
    info["trainer"] = {{"optimizer", trainer->optimizer().name()},
                       {"optimizer_steps", trainer->optimizer().steps_taken()},
                       {"sampler_rng", rng_json(s.rng)},
                       {"sampler_batches", s.batches_drawn},
                       {"dropout_rng", rng_json(model.dropout_rng().state())}};
  }
  {
    std::ofstream f(tmp / "checkpoint.json");
    f << info.dump(2) << "\n";
    if (!f) throw std::runtime_error("cannot write " + (tmp / "checkpoint.json").string());
  }
  fs::path old = final_dir;
  old += ".old";
  fs::remove_all(old, ec);
  if (fs::exists(final_dir)) fs::rename(final_dir, old, ec);
  fs::rename(tmp, final_dir, ec);
  if (ec) throw std::runtime_error("cannot move checkpoint into " + final_dir.string() + ": " + ec.message());
  fs::remove_all(old, ec);
}

CheckpointInfo read_checkpoint_info(const std::string& dir) {
  fs::path path = fs::path(dir) / "checkpoint.json";
  std::ifstream f(path);
  if (!f) throw std::runtime_error("no checkpoint at " + dir + " (cannot read " + path.string() + ")");
  try {
    nlohmann::json j = nlohmann::json::parse(f);
    CheckpointInfo c;
    c.model = model_config_from_json(j.at("model"));
    c.train = train_config_from_json(j.at("train"));
    c.tokenizer = j.at("tokenizer");
    c.step = j.at("step").get<int64_t>();
    if (j.contains("trainer")) c.trainer_state = j["trainer"];
    return c;
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(path.string() + ": corrupt checkpoint metadata: " + e.what());
  }
}

void load_model_weights(const std::string& dir, LanguageModel& model) {
  const std::string path = (fs::path(dir) / "model.safetensors").string();
  SafetensorsFile file = read_safetensors(path);
  for (auto& [name, p] : model.named_parameters()) {
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) {
      bool tied = false;  // a tied tensor is stored under its first name only
      for (auto& v : weight_views(model)) tied |= v.data == p->data() && v.name != name;
      if (tied) continue;
      throw std::runtime_error(path + ": tensor '" + name + "' is missing");
    }
    const LoadedTensor& t = it->second;
    bool same = int(t.shape.size()) == p->shape().rank;
    for (int i = 0; same && i < p->shape().rank; ++i) same = t.shape[size_t(i)] == p->shape()[i];
    if (!same) {
      std::string got = "(";
      for (size_t i = 0; i < t.shape.size(); ++i) got += (i ? ", " : "") + std::to_string(t.shape[i]);
      throw std::runtime_error(path + ": tensor '" + name + "' has shape " + got +
                               ") but the model expects " + p->shape().str());
    }
    std::copy(t.data.begin(), t.data.end(), p->data());
  }
}

void load_trainer_state(const std::string& dir, Trainer& trainer) {
  CheckpointInfo info = read_checkpoint_info(dir);
  if (info.trainer_state.is_null())
    throw std::runtime_error(dir + ": checkpoint has no trainer state (saved for inference only)");
  const std::string path = (fs::path(dir) / "optimizer.safetensors").string();
  SafetensorsFile file = read_safetensors(path);
  NamedBuffers state;
  for (auto& [name, t] : file.tensors) state.emplace_back(name, t.data);
  const nlohmann::json& ts = info.trainer_state;
  trainer.optimizer().load_state(state, ts.at("optimizer_steps").get<int64_t>());
  BatchSampler::State s;
  s.rng = rng_from_json(ts.at("sampler_rng"));
  s.batches_drawn = ts.at("sampler_batches").get<int64_t>();
  trainer.sampler().set_state(s);
  trainer.model().dropout_rng().set_state(rng_from_json(ts.at("dropout_rng")));
  trainer.set_step(info.step);
}

}  // namespace bl

// Every built-in component, registered by name in one place.
#include "core/components.h"

#include "core/config.h"

namespace bl {

namespace {
template <class T, class Base>
typename Registry<Base>::Factory make() {
  return [](const BlockConfig& c) { return std::unique_ptr<Base>(new T(c)); };
}

void register_attention(Registry<Attention>& r) {}
void register_ffn(Registry<FeedForward>& r) {}
void register_norm(Registry<Norm>& r) {}
void register_position(Registry<PositionEncoding>& r) {}
}  // namespace

Registry<Attention>& attention_registry() {
  static Registry<Attention> r = [] {
    Registry<Attention> reg("attention");
    register_attention(reg);
    return reg;
  }();
  return r;
}
Registry<FeedForward>& ffn_registry() {
  static Registry<FeedForward> r = [] {
    Registry<FeedForward> reg("ffn");
    register_ffn(reg);
    return reg;
  }();
  return r;
}
Registry<Norm>& norm_registry() {
  static Registry<Norm> r = [] {
    Registry<Norm> reg("norm");
    register_norm(reg);
    return reg;
  }();
  return r;
}
Registry<PositionEncoding>& position_registry() {
  static Registry<PositionEncoding> r = [] {
    Registry<PositionEncoding> reg("position");
    register_position(reg);
    return reg;
  }();
  return r;
}

}  // namespace bl

// Rotary position embedding: the inverse frequencies (with linear and Llama-3 scaling, as Hugging
// Face transformers' _compute_default_rope_parameters / _compute_llama3_parameters) and the
// reference rotation for both pair layouts.
#include <cmath>
#include <memory>
#include <numbers>
#include <span>
#include <vector>

#include "check.h"

namespace tessera::ops {

std::vector<float> rope_inv_freq(const RopeParams& p) {
  const int rot = p.rotary_dim == 0 ? p.head_dim : p.rotary_dim;
  if (rot <= 0 || rot % 2 != 0)
    fail(ErrorCode::kInvalidArgument, "rope_inv_freq: rotary dim ", rot, " must be even and > 0");
  std::vector<float> inv(static_cast<size_t>(rot / 2));
  for (int i = 0; i < rot / 2; ++i) {
    // HF: 1 / base ** (arange(0, dim, 2).float() / dim), evaluated in fp32.
    const float expo = static_cast<float>(2 * i) / static_cast<float>(rot);
    inv[static_cast<size_t>(i)] = 1.0f / static_cast<float>(std::pow(static_cast<double>(p.theta),
                                                                     static_cast<double>(expo)));
  }
  if (p.llama3_factor != 0.0f) {
    const float factor = p.llama3_factor;
    const float lo = p.llama3_low_freq_factor, hi = p.llama3_high_freq_factor;
    const auto old_ctx = static_cast<float>(p.llama3_original_max_position);
    const float low_freq_wavelen = old_ctx / lo;
    const float high_freq_wavelen = old_ctx / hi;
    for (float& f : inv) {
      const float wavelen = 2.0f * std::numbers::pi_v<float> / f;
      if (wavelen > low_freq_wavelen) {
        f = f / factor;  // long wavelengths: fully interpolated
      } else if (!(wavelen < high_freq_wavelen)) {
        // Medium band: blend between interpolated and original frequency.
        const float smooth = (old_ctx / wavelen - lo) / (hi - lo);
        f = (1.0f - smooth) * f / factor + smooth * f;
      }  // short wavelengths: unchanged
    }
  }
  if (p.linear_factor != 1.0f)
    for (float& f : inv) f /= p.linear_factor;  // position / factor == frequency / factor
  if (!p.freq_factors.empty()) {
    if (p.freq_factors.size() != inv.size())
      fail(ErrorCode::kInvalidArgument, "rope_inv_freq: ", p.freq_factors.size(),
           " freq_factors for ", inv.size(), " rotary pairs");
    for (size_t i = 0; i < inv.size(); ++i) inv[i] /= p.freq_factors[i];
  }
  return inv;
}

namespace {
// The fields rope_inv_freq reads (style and head_dim do not change the frequencies, rotary_dim's
// default does).
bool same_frequency_fields(const RopeParams& a, const RopeParams& b) {
  const int rot_a = a.rotary_dim == 0 ? a.head_dim : a.rotary_dim;
  const int rot_b = b.rotary_dim == 0 ? b.head_dim : b.rotary_dim;
  return rot_a == rot_b && a.theta == b.theta && a.linear_factor == b.linear_factor &&
         a.llama3_factor == b.llama3_factor &&
         a.llama3_low_freq_factor == b.llama3_low_freq_factor &&
         a.llama3_high_freq_factor == b.llama3_high_freq_factor &&
         a.llama3_original_max_position == b.llama3_original_max_position &&
         a.freq_factors == b.freq_factors;
}
}  // namespace

RopeParams with_inv_freq(RopeParams p) {
  p.inv_freq.reset();
  auto cache = std::make_shared<RopeInvFreq>();
  cache->source = p;
  cache->values = rope_inv_freq(p);
  p.inv_freq = std::move(cache);
  return p;
}

std::span<const float> rope_frequencies(const RopeParams& p, std::vector<float>& scratch) {
  if (p.inv_freq && same_frequency_fields(p, p.inv_freq->source)) return p.inv_freq->values;
  scratch = rope_inv_freq(p);
  return scratch;
}

namespace ref {

void rope(Tensor& x, int num_heads, const Indices& idx, const RopeParams& p) {
  detail::require_host("rope", {&x, &idx.tensor()});
  const int rot = detail::check_rope("rope", x, num_heads, idx, p);
  const auto positions = detail::host_span("rope", "positions", idx);
  const std::vector<float> inv = rope_inv_freq(p);
  const int half = rot / 2;
  float* base = x.data_as<float>();
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int h = 0; h < num_heads; ++h) {
      float* v = base + (static_cast<int64_t>(t) * num_heads + h) * p.head_dim;
      for (int i = 0; i < half; ++i) {
        const float angle = static_cast<float>(positions[t]) * inv[static_cast<size_t>(i)];
        const float c = std::cos(angle), s = std::sin(angle);
        const int a = p.style == RopeStyle::kInterleaved ? 2 * i : i;
        const int b = p.style == RopeStyle::kInterleaved ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * c - x1 * s;
        v[b] = x0 * s + x1 * c;
      }
    }
  }
}

}  // namespace ref
}  // namespace tessera::ops

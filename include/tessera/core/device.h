// Device: where a tensor's bytes live. Three kinds: the CPU; a CUDA GPU; and the guarded device,
// a test stand-in for a GPU whose buffers are host pages that host code may not touch (see
// allocator.h). Every Storage carries its Device; ops pick their implementation table by it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tessera {

enum class DeviceType : uint8_t { kCPU, kCUDA, kGuarded };

struct Device {
  DeviceType type = DeviceType::kCPU;
  int index = 0;
  static Device cpu() { return {}; }
  static Device cuda(int i) { return {DeviceType::kCUDA, i}; }
  static Device guarded(int i) { return {DeviceType::kGuarded, i}; }
  bool is_cpu() const { return type == DeviceType::kCPU; }
  bool is_cuda() const { return type == DeviceType::kCUDA; }
  bool is_guarded() const { return type == DeviceType::kGuarded; }
  bool operator==(const Device&) const = default;
  std::string str() const;  // "cpu", "cuda:1", "guarded:0"
};

// The device kind a topology's `backend:` names ("cpu", "cuda", "guarded"); throws otherwise.
DeviceType parse_device_type(std::string_view backend);
// The inverse: "cpu", "cuda" or "guarded".
const char* device_backend_name(Device device);

}  // namespace tessera

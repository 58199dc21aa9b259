// Executor <-> worker wire frames on arbitrary bytes: the frame header and every payload decoder.
// A frame that decodes must re-encode to a frame that decodes to the same bytes.
#include <span>
#include <vector>

#include "fuzz_target.h"
#include "tessera/core/error.h"
#include "tessera/protocol/codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  using namespace tessera::protocol;
  const std::span<const uint8_t> bytes(data, size);
  try {
    (void)decode_frame(bytes);
  } catch (const Error&) {
  }
  try {
    const ExecutePlan plan = decode_plan(bytes);
    const std::vector<uint8_t> again = encode_plan(plan);
    FUZZ_CHECK(encode_plan(decode_plan(again)) == again, "plan re-encoding is not stable");
  } catch (const Error&) {
  }
  try {
    const ExecuteResult r = decode_result(bytes);
    const std::vector<uint8_t> again = encode_result(r);
    FUZZ_CHECK(encode_result(decode_result(again)) == again, "result re-encoding is not stable");
  } catch (const Error&) {
  }
  try {
    (void)decode_hello(bytes);
  } catch (const Error&) {
  }
  try {
    (void)decode_error(bytes);
  } catch (const Error&) {
  }
  return 0;
}

// Progress lines: what an operator reads while a model downloads or loads. The formatting is a
// pure function, so its fields (bar, percent, amounts, rate, ETA) are checked exactly.
#include <gtest/gtest.h>

#include "tessera/core/progress.h"

namespace tessera {
namespace {

TEST(Progress, AmountsInDecimalUnits) {
  EXPECT_EQ(format_amount(512, ProgressUnit::kBytes), "512 B");
  EXPECT_EQ(format_amount(1500, ProgressUnit::kBytes), "1.5 kB");
  EXPECT_EQ(format_amount(96'600'000, ProgressUnit::kBytes), "96.6 MB");
  EXPECT_EQ(format_amount(40'500'000'000ull, ProgressUnit::kBytes), "40.50 GB");
  EXPECT_EQ(format_amount(17, ProgressUnit::kItems), "17");
}

TEST(Progress, BarPercentRateAndEta) {
  // A quarter of 100 MB in 2 s: 12.5 MB/s, 75 MB left -> 6 s.
  EXPECT_EQ(format_progress("download x", 25'000'000, 100'000'000, ProgressUnit::kBytes, 2.0, 8),
            "download x  [##------]   25%  25.0 MB/100.0 MB  12.5 MB/s  ETA 6s");
  // Log lines leave the bar out; a long remainder is shown in minutes.
  EXPECT_EQ(format_progress("sha256", 1'000'000, 200'000'000, ProgressUnit::kBytes, 1.0, 0),
            "sha256    0%  1.0 MB/200.0 MB  1.0 MB/s  ETA 3m19s");
}

TEST(Progress, UnknownTotalAndCompletion) {
  // Without a total: amount and rate only, no bar, no percent, no ETA.
  EXPECT_EQ(format_progress("w", 3'000'000, 0, ProgressUnit::kBytes, 1.5, 10), "w  3.0 MB  2.0 MB/s");
  // Done: full bar, no ETA; more than the total (a size that was an estimate) stays at 100 %.
  EXPECT_EQ(format_progress("w", 120, 100, ProgressUnit::kItems, 0.0, 4), "w  [####]  100%  120/100");
  // A final line below its total (a warm-up ended by EOS) has no ETA.
  EXPECT_EQ(format_progress("w", 8, 32, ProgressUnit::kItems, 1.0, 0, /*finished=*/true),
            "w   25%  8/32  8.0/s");
  // Nothing done yet: no rate to divide by.
  EXPECT_EQ(format_progress("w", 0, 10, ProgressUnit::kItems, 5.0, 0), "w    0%  0/10");
}

TEST(Progress, ReporterIgnoresUpdatesAfterFinish) {
  ProgressReporter off("quiet", 10, ProgressUnit::kItems, ProgressStyle::kOff);
  off.update(5);
  off.finish();
  off.update(7);  // no effect, no crash
  ProgressReporter lines("lines", 3, ProgressUnit::kItems, ProgressStyle::kLines,
                         std::chrono::milliseconds(0));
  auto fn = lines.fn();
  fn(1, 0);
  fn(3, 4);  // a new total from the callee
  lines.finish();
  lines.finish();  // once only
}

}  // namespace
}  // namespace tessera

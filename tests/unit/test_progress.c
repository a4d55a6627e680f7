/* The progress line of long runs (agent/cli/progress.c): what a volunteer
 * watching 2,000 targets needs to know, computed, not timed. */
#include <string.h>

#include "agent/cli/progress.h"
#include "tests/runner.h"

PX_TEST(progress_line_says_percentage_rate_elapsed_and_eta) {
  (void)state;
  char line[256];
  px_progress_format(500, 2000, 64, 65.0, line, sizeof(line));
  assert_string_equal(line, "500/2000 targets (25%), 7.7/s, 1m05s elapsed, ETA 3m15s, "
                            "64 operations in flight");
  /* Nothing done yet: no estimate; all done: none needed. */
  px_progress_format(0, 10, 3, 2.0, line, sizeof(line));
  assert_string_equal(line, "0/10 targets (0%), 0.0/s, 2s elapsed, 3 operations in flight");
  px_progress_format(10, 10, 0, 7200.0, line, sizeof(line));
  assert_string_equal(line, "10/10 targets (100%), 0.0/s, 2h00m elapsed, 0 operations in flight");
}

#!/bin/bash
# NVBitFI's sdc_check.sh contract: run in the run directory after run.sh; it writes four logs,
# and a non-empty one means a silent data corruption. APP_DIR holds the golden files
# (fi-campaign's golden runs make them when this folder has none).
diff output.txt ${APP_DIR}/golden_output.txt > diff.log
diff stdout.txt ${APP_DIR}/golden_stdout.txt > stdout_diff.log
diff stderr.txt ${APP_DIR}/golden_stderr.txt > stderr_diff.log
# the program's own check: its checksum line must be the golden one
grep checksum stdout.txt > checksum.txt
grep checksum ${APP_DIR}/golden_stdout.txt > golden_checksum.txt
diff checksum.txt golden_checksum.txt > special_check.log

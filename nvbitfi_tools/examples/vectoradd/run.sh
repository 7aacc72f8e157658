#!/bin/bash
# NVBitFI's run.sh contract: started in the run directory with BIN_DIR (where the binary is)
# and PRELOAD_FLAG (LD_PRELOAD=<the tool>, or empty for a golden run) set; the program's
# output goes to stdout.txt and stderr.txt there.
eval ${PRELOAD_FLAG} ${BIN_DIR}/vectoradd output.txt > stdout.txt 2> stderr.txt

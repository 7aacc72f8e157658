#!/bin/sh
# What the tests drive for real, for `make test` and CI alike (.ci/run only adds CI=1):
#   browser     headless Chromium, which the HTML report tests render in    (Debian: chromium)
#   postgresql  initdb/pg_ctl, with which the tests start a throwaway server (Debian: postgresql)
#   slurm       the local single-node cluster of .ci/slurm-up.sh             (Debian: slurm-wlm, munge)
# No argument: all three. What is missing is installed when that is possible (root, with apt-get),
# in one apt-get call, and Slurm is started; otherwise a line says which tests will be skipped and
# how to get them. Under CI=1 a part that cannot be had fails instead: CI must run every test.
# POSIX sh, and only `id`, `apt-get` and what a part needs: make runs this with a bare PATH too.
case $0 in */*) cd "${0%/*}/.." ;; *) cd .. ;; esac || exit 1
[ $# -gt 0 ] || set -- browser postgresql slurm

BROWSER_TESTS="the HTML rendering tests (render_in_chromium in tests/test_report.py and tests/test_report_demo.py)"
POSTGRES_TESTS="the tests on a PostgreSQL store (every test run with backend postgresql, tests/test_store_copy.py and tests/test_slurm.py)"
SLURM_TESTS="the Slurm tests (tests/test_slurm.py)"

has_postgresql() {
  for f in /usr/lib/postgresql/*/bin/initdb; do [ -x "$f" ] && return 0; done
  command -v initdb >/dev/null 2>&1
}
has_slurm() { command -v slurmctld >/dev/null 2>&1 && command -v sbatch >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; }
has() {
  case $1 in
    browser) command -v chromium >/dev/null 2>&1 ;;
    postgresql) has_postgresql ;;
    slurm) has_slurm ;;
  esac
}
name() { case $1 in browser) echo chromium ;; postgresql) echo PostgreSQL ;; slurm) echo Slurm ;; esac; }
packages() { case $1 in browser) echo chromium ;; postgresql) echo postgresql ;; slurm) echo slurm-wlm munge ;; esac; }
tests() { case $1 in browser) echo "$BROWSER_TESTS" ;; postgresql) echo "$POSTGRES_TESTS" ;; slurm) echo "$SLURM_TESTS" ;; esac; }
hint() { [ "$1" = browser ] && echo " (or put a chromium executable on PATH)"; }
fail=0
unavailable() {  # one line, and a failure under CI
  echo "$1"
  fail=1
}

missing="" need=""
for part in "$@"; do
  has "$part" || { missing="$missing $part"; need="$need $(packages "$part")"; }
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    for part in $missing; do
      echo "$(name "$part") is missing: installing it for $(tests "$part") (apt-get install $(packages "$part"))"
    done
    # shellcheck disable=SC2086  # one word per package
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need
    for part in $missing; do
      has "$part" || unavailable "apt-get could not install $(packages "$part"): $(tests "$part") will be skipped. To run them: apt-get install $(packages "$part"), then make test."
    done
  else
    for part in $missing; do
      unavailable "$(name "$part") is not installed and cannot be installed here (that needs root and apt-get): $(tests "$part") will be skipped. To run them: sudo apt-get install $(packages "$part")$(hint "$part"), then make test."
    done
  fi
fi

for part in "$@"; do
  [ "$part" = slurm ] && has_slurm || continue
  if scontrol ping 2>/dev/null | grep -q UP; then
    :
  elif [ "$(id -u)" = 0 ]; then
    .ci/slurm-up.sh || unavailable "the local Slurm cluster did not start (.ci/slurm-up.sh; logs in ${FI_SLURM_DIR:-/tmp/fi-slurm}/log): $SLURM_TESTS will be skipped."
  else
    unavailable "Slurm is installed but not running, and only root can start the local cluster: $SLURM_TESTS will be skipped. To run them: sudo .ci/slurm-up.sh, then make test."
  fi
done

[ "$fail" = 0 ] || [ -z "$CI" ] || exit 1
exit 0

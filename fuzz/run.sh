#!/bin/sh
# Runs the libFuzzer harnesses built by `make fuzz-build` (see fuzz/README.md).
#   fuzz/run.sh fuzz    BUILD TARGET...   fuzz each target for $FUZZ_SECONDS (default 60)
#   fuzz/run.sh regress BUILD TARGET...   run every file of fuzz/corpus/T and fuzz/regressions/T once
# Fuzzing starts from the committed seeds (fuzz/corpus/T), the regressions and
# what earlier runs found (BUILD/corpus/T, where new inputs are written; the
# committed seed directories are never written to). A crash leaves its input
# in BUILD/artifacts/T/ and fails the run. Each run appends a line to
# BUILD/fuzz-stats.log. The last line printed is "N passed, N failed" (one per
# target).
set -u
cd "$(dirname "$0")/.."
usage="usage: fuzz/run.sh fuzz|regress BUILD TARGET..."
mode=${1:?$usage}
build=${2:?$usage}
shift 2
seconds=${FUZZ_SECONDS:-60}
max_len=${FUZZ_MAX_LEN:-8192}
passed=0
failed=0
for t in "$@"; do
  bin=$build/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz/run.sh: $bin is not built" >&2; exit 2; }
  seeds=fuzz/corpus/$t
  regs=fuzz/regressions/$t
  log=$build/fuzz_$t.log
  case "$mode" in
    regress)
      files=$(find "$seeds" "$regs" -type f 2>/dev/null | sort)
      n=$(echo "$files" | grep -c .)
      # shellcheck disable=SC2086
      if "$bin" -timeout=10 $files >"$log" 2>&1; then
        echo "fuzz_$t: $n inputs replayed, no finding"
        passed=$((passed + 1))
      else
        echo "fuzz_$t: FAILED replaying $n inputs; the end of $log:"
        tail -n 40 "$log"
        failed=$((failed + 1))
      fi
      ;;
    fuzz)
      work=$build/corpus/$t
      artifacts=$build/artifacts/$t
      mkdir -p "$work" "$artifacts"
      dirs="$work $seeds"
      [ -d "$regs" ] && dirs="$dirs $regs"
      dict=""
      [ -f "fuzz/$t.dict" ] && dict="-dict=fuzz/$t.dict"
      # shellcheck disable=SC2086
      "$bin" -max_total_time="$seconds" -timeout=10 -max_len="$max_len" -print_final_stats=1 \
        -artifact_prefix="$artifacts/" $dict $dirs >"$log" 2>&1
      rc=$?
      runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
      done_line=$(grep -a -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
      cov=$(echo "$done_line" | sed -n 's/.*cov: \([0-9]*\) ft: \([0-9]*\) corp: \([0-9]*\).*/cov \1, ft \2, corpus \3/p')
      summary="fuzz_$t: ${runs:-?} runs in ${seconds} s, ${cov:-coverage unknown}"
      echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $summary rc=$rc" >>"$build/fuzz-stats.log"
      if [ "$rc" -eq 0 ]; then
        echo "$summary, no crash"
        passed=$((passed + 1))
      else
        echo "$summary: CRASH (rc $rc); the end of $log:"
        grep -a -v '^#\|^"' "$log" | tail -n 40
        echo "reproduce: $bin <input>; once fixed, move the input to $regs/"
        failed=$((failed + 1))
      fi
      ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

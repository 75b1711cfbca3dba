#!/bin/sh
# `make test-all`: the whole suite once per interpreter given (lua5.1 .. lua5.4,
# luajit), each built into its own build/<name>/. Prints each run's closing
# line prefixed with the interpreter, then the sum as the last line:
# "N passed, N failed[, N skipped]". Exits non-zero when any run failed or
# ended without its closing line (counted as one failure).
set -u
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
passed=0 failed=0 skipped=0 summary=""
for lua in "$@"; do
  echo "== $lua"
  { make -s test LUA="$lua" 2>&1; echo $? >"$tmp/rc"; } | tee "$tmp/log"
  rc=$(cat "$tmp/rc")
  line=$(grep -a -E '^[0-9]+ passed, [0-9]+ failed' "$tmp/log" | tail -n 1)
  if [ -z "$line" ]; then
    summary="$summary$lua: ended (status $rc) without a closing line
"
    failed=$((failed + 1))
    continue
  fi
  summary="$summary$lua: $line
"
  p=${line%% passed*}
  f=${line#* passed, }
  f=${f%% failed*}
  s=0
  case "$line" in *skipped*) s=${line##*failed, }; s=${s%% skipped*} ;; esac
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then failed=$((failed + 1)); fi
done
printf '\n%s' "$summary"
if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]

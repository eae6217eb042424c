#!/usr/bin/env bash
# Runs every cargo-fuzz target of the workspace for a short, fixed time (default 10 s each).
# cargo-fuzz is installed under .tools/ on first use. The machine has a stable toolchain only;
# RUSTC_BOOTSTRAP=1 lets it accept the instrumentation flags libFuzzer needs. A crash fails
# the run, prints the end of the fuzzer's log, and leaves the input under
# crates/<crate>/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-10}"
tools="$PWD/.tools"
logs="$PWD/target/fuzz-logs"
version="$(sed -n 's/^CARGO_FUZZ_VERSION := //p' Makefile)"
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$version"; then
  echo "installing cargo-fuzz $version under .tools/"
  cargo install --quiet --locked --root "$tools" cargo-fuzz --version "$version"
fi
export PATH="$tools/bin:$PATH" RUSTC_BOOTSTRAP=1
mkdir -p "$logs"
status=0
for dir in crates/*/fuzz; do
  [ -f "$dir/Cargo.toml" ] || continue
  crate="$(basename "$(dirname "$dir")")"
  for target in $(cargo fuzz list --fuzz-dir "$dir"); do
    log="$logs/$crate-$target.log"
    mkdir -p "$dir/corpus/$target"
    # One target directory for every fuzz crate, so shared dependencies build once.
    if cargo fuzz run --fuzz-dir "$dir" --target-dir "$PWD/target/fuzz" --sanitizer none \
        "$target" "$dir/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 > "$log" 2>&1; then
      runs="$(grep -o 'Done [0-9]* runs' "$log" | tail -n 1 || true)"
      echo "fuzz $crate/$target: ${runs:-finished} in ${seconds}s, no crash"
    else
      echo "fuzz $crate/$target: FAILED (log: $log)"
      tail -n 40 "$log"
      status=1
    fi
  done
done
exit $status

#!/usr/bin/env bash
# Runs every cargo-fuzz target of the workspace for a short, fixed time (default 20 s each).
# cargo-fuzz is installed under .tools/ on first use. The machine has a stable toolchain only;
# RUSTC_BOOTSTRAP=1 lets it accept the instrumentation flags libFuzzer needs. A crash fails
# the run and leaves its input under crates/<crate>/fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
tools="$PWD/.tools"
version="$(sed -n 's/^CARGO_FUZZ_VERSION := //p' Makefile)"
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$version"; then
  echo "installing cargo-fuzz $version under .tools/"
  cargo install --quiet --locked --root "$tools" cargo-fuzz --version "$version"
fi
export PATH="$tools/bin:$PATH" RUSTC_BOOTSTRAP=1
status=0
for dir in crates/*/fuzz; do
  [ -f "$dir/Cargo.toml" ] || continue
  for target in $(cargo fuzz list --fuzz-dir "$dir"); do
    echo "fuzzing $dir $target for ${seconds}s"
    mkdir -p "$dir/corpus/$target"
    if ! cargo fuzz run --fuzz-dir "$dir" --sanitizer none "$target" "$dir/corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=0 2>&1 | tail -n 3; then
      echo "fuzz target $dir $target FAILED"
      status=1
    fi
  done
done
exit $status

# Sourced by the benchmark scripts (after `say` and `PY` are set).
#
#   find_berth   sets BERTH (the binary to measure) and BUILD (what it is): the one
#                BENCH_BERTH names, else the release build, built here.
find_berth() {
  if [ -n "${BENCH_BERTH:-}" ]; then
    BERTH=$(realpath "$BENCH_BERTH"); BUILD="the binary BENCH_BERTH names"
  else
    say "building the release binary"
    cargo build --release --bin berth
    TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    BERTH=$TARGET_DIR/release/berth; BUILD="release build"
  fi
}

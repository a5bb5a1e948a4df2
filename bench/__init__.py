"""baton's benchmarks: what users feel, each figure beside a baseline measured in the same
run on the same machine. Not part of the test suite. Run ``./dev bench`` (see
docs/development/benchmarks.md)."""

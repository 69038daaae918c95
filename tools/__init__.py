"""Development only (tests, benchmarks): synthetic footage and a tiny random Wan model. Not in the
wheel, and nothing under wandata/ imports it."""

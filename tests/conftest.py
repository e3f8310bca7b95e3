"""Test-session settings. The models in the tests are tiny: one torch thread is faster than two
for them and immune to OpenMP spin-waiting when the machine is shared.

Hypothesis runs derandomized by default, so `make test` (and CI) is reproducible: a red run
is the same red run on every machine. ``HYPOTHESIS_PROFILE=explore`` draws fresh random
examples on every run, to hunt for new failures; each one found becomes a
deterministic regression test (as the zip-header test in tests/models/test_load_fuzz.py)."""
import os

import torch
from hypothesis import settings

torch.set_num_threads(1)

settings.register_profile("default", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

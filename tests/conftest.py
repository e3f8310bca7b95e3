"""Test-session settings. The models in the tests are tiny: one torch thread is faster than two
for them and immune to OpenMP spin-waiting when the machine is shared."""
import torch

torch.set_num_threads(1)

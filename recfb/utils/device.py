"""Device choice: ``"auto"`` means CUDA when torch sees one, else CPU."""
from __future__ import annotations


def resolve_device(device="auto"):
    import torch
    if isinstance(device, torch.device):
        return device
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str):
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}.")
    try:
        dev = torch.device(device)
    except RuntimeError:  # torch's message lists two dozen backends; say what recfb runs on
        raise ValueError(f"device == {device!r}, must be 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device == {device!r}, must be 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device == {device!r} but torch sees no CUDA device; use device='auto' or 'cpu'.")
    return dev


def seeded_rng(seed, device):
    """Context in which torch's global RNG (CPU, and ``device`` when CUDA) is seeded with
    ``seed`` (left as is when None) and restored afterwards: module initialisers and dropout
    become reproducible without changing the caller's random state."""
    import contextlib

    import torch

    device = torch.device(device)

    @contextlib.contextmanager
    def ctx():
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            if seed is not None:
                torch.manual_seed(int(seed))
            yield
    return ctx()

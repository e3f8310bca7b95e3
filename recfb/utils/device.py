"""Device choice: ``"auto"`` means CUDA when torch sees one, else CPU."""
from __future__ import annotations


def resolve_device(device="auto", *, available: bool | None = None, why: str = "torch sees no CUDA device"):
    """The torch.device of a ``device`` argument, the one resolver of recfb's models, serving
    and training. ``"auto"`` (or None) is CUDA when the computation can run there, else CPU;
    ``available`` says whether it can (default: ``torch.cuda.is_available()``; serving passes
    whether faiss's GPU build sees a GPU, with ``why`` saying what is missing otherwise).
    ``"cuda"`` where it cannot raises :class:`~recfb.utils.errors.DeviceUnavailableError`."""
    import torch

    from recfb.utils.errors import DeviceUnavailableError
    if isinstance(device, torch.device):
        return device
    can = torch.cuda.is_available() if available is None else bool(available)
    if device in (None, "auto"):
        return torch.device("cuda" if can else "cpu")
    if not isinstance(device, str):
        raise TypeError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}.")
    try:
        dev = torch.device(device)
    except RuntimeError:  # torch's message lists two dozen backends; say what recfb runs on
        raise ValueError(f"device == {device!r}, must be 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device == {device!r}, must be 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    if dev.type == "cuda" and not can:
        raise DeviceUnavailableError(f"device='{device}' is unavailable: {why}; use device='auto' or 'cpu'.")
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

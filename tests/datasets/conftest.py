"""Fixtures for the dataset tests: an isolated cache, no outside network, the real data."""
import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _find_shared_data():
    """RECFB_DATA_DIR (as the Makefile sets it) or ../shared/datasets beside the repo."""
    env = os.environ.get("RECFB_DATA_DIR", "")
    candidates = [Path(p) for p in env.split(os.pathsep) if p.strip()]
    candidates.append(REPO.parent / "shared" / "datasets")
    for path in candidates:
        if (path / "ml-100k").is_dir():
            return path
    return None


SHARED_DATA = _find_shared_data()  # resolved before any test clears the environment

_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost"}


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path):
    """Every test gets its own empty cache and no $RECFB_DATA_DIR; only loopback connections are
    allowed, so no test can touch the user's cache or reach the real network."""
    monkeypatch.setenv("RECFB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RECFB_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock, address):
        if isinstance(address, tuple) and address[0] not in _LOCAL_HOSTS:
            raise RuntimeError(f"test tried to reach the network: {address}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL_HOSTS:
            raise RuntimeError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def shared_data() -> Path:
    if SHARED_DATA is None:
        pytest.skip("real datasets not found: set RECFB_DATA_DIR to the shared datasets folder "
                    "(../shared/datasets next to the repository)")
    return SHARED_DATA

"""Fixtures shared by several test files.

``no_network``: the machine as if it had no network and no downloaded weights, whatever this machine really has,
so that the "this model needs a network" answers are tested the same way everywhere (README: Models).
"""
from __future__ import annotations

import ipaddress
import socket

import pytest

LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _is_loopback(host) -> bool:
    if host is None or str(host) in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_network(monkeypatch, tmp_path):
    """No network, no cached weights: the loaders' reachability check answers "no", the PyTorch hub and the
    Hugging Face caches are empty temporary folders, and any attempt to resolve or connect to a host other than
    this machine is recorded and refused (the served app and its client talk over the loopback, which stays).

    Yields the list of refused attempts; a test asserts it is empty to show that nothing tried the network.
    """
    import huggingface_hub.constants as hub_constants

    import model_zoo
    import model_zoo.hf_models as hf
    import model_zoo.pytorchvideo_models as pv

    attempts: list = []
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    for module in (model_zoo, pv, hf):
        monkeypatch.setattr(module, "reachable", lambda url, timeout=3.0: False)

    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else None
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(host):
            attempts.append(("connect", address))
            raise OSError(f"test: no network (connection to {address!r} refused)")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            attempts.append(("getaddrinfo", host))
            raise socket.gaierror(socket.EAI_NONAME, f"test: no network (cannot resolve {host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    model_zoo.clear_cache()
    yield attempts
    model_zoo.clear_cache()


@pytest.fixture
def one_thread():
    """Tiny tensors on one intra-op thread: on a shared, loaded CPU the thread pool's hand-offs cost far more
    than the arithmetic of a 16-32 px test clip (test_step.py runs in about half the time)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="session")
def private_cost_cache(tmp_path_factory):
    """The cost model's timings and the result cache go to temporary folders, never to the user's caches (README:
    Speed, Result cache)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("VAE_COST_CACHE", str(tmp_path_factory.mktemp("cost") / "cost.json"))
    mp.setenv("VAE_CACHE_DIR", str(tmp_path_factory.mktemp("results")))
    yield
    mp.undo()

import pytest
import torch

from model.device import DEVICE_ENV_VAR, THREADS_ENV_VAR, cpu_threads, select_device


def test_auto_and_explicit_cpu(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device().type == expected
    assert select_device("auto").type == expected
    assert select_device("CPU") == torch.device("cpu")


def test_env_var_overrides_prefer(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV_VAR, "cpu")
    assert select_device("cuda") == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV_VAR, "tpu")
    with pytest.raises(ValueError, match=DEVICE_ENV_VAR):
        select_device()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_cuda_raises(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV_VAR, raising=False)
    with pytest.raises(RuntimeError, match="CUDA"):
        select_device("cuda")
    monkeypatch.setenv(DEVICE_ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match=DEVICE_ENV_VAR):
        select_device("cpu")


def test_cpu_threads_sets_and_restores(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(THREADS_ENV_VAR, raising=False)
    with cpu_threads(torch.device("cpu")):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv(THREADS_ENV_VAR, "2")
    with cpu_threads(torch.device("cpu")):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
    monkeypatch.setenv(THREADS_ENV_VAR, "zero")
    with pytest.raises(ValueError, match=THREADS_ENV_VAR):
        with cpu_threads(torch.device("cpu")):
            pass

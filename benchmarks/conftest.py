import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _two_threads():
    """Match the CPU budget the official timings were taken with (2 threads)."""
    torch.set_num_threads(2)

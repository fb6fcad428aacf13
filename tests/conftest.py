import os
import sys

import pytest

# The shared problems module sits beside the tests.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small tensors: on the 2 shared cores, intra-op threads only wait on each other (a
    (1000, 2) matmul takes 20 ms with 2 busy threads, 15 us with 1). Restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

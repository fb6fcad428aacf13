import os
import shutil
import sys
import tempfile

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


_CACHE_VARIABLE = "JAX_COMPILATION_CACHE_DIR"


def pytest_configure(config):
    """One JAX compilation cache for the session: both workers and every process a test starts
    (the CLI, examples, multi-process runs) reuse programs another compiled, most of all the many
    tiny ones NumPyro's model set-up compiles op by op, which every fresh process repeats. Set on
    the controller before the workers start, so they inherit it; a fresh folder each session (no
    stale programs), removed at the end; a user's own setting is left alone."""
    if os.environ.get(_CACHE_VARIABLE) or hasattr(config, "workerinput"):
        return
    folder = tempfile.mkdtemp(prefix="ppl-ebm-tests-jax-cache-")
    config._ppl_ebm_jax_cache = folder
    os.environ[_CACHE_VARIABLE] = folder
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_unconfigure(config):
    folder = getattr(config, "_ppl_ebm_jax_cache", None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)

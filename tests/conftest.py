"""Test configuration: float64, strict rank promotion, deterministic hypothesis."""

import ctypes
import ctypes.util
import gc
import os

import jax
import pytest
from hypothesis import Phase, settings

jax.config.update("jax_enable_x64", True)
# The command-line tests call pdeml's main() in the test process, and main() tunes glibc's
# allocator to keep freed memory (right for one training process, wrong for a pytest worker
# that runs hundreds of tests): the suite leaves the allocator as it is.
os.environ["PDEML_CPU_ALLOCATOR"] = "default"
jax.config.update("jax_numpy_rank_promotion", "raise")

# JAX compiles on the first example, so deadlines are meaningless; derandomize for CI.
# No shrinking in CI: each example costs a JAX solve, and shrinking can take minutes; the
# failing example is printed as found.
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    max_examples=15,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _trim_heap():
    """Return freed heap memory to the system (glibc's malloc_trim; a no-op elsewhere)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    # Each pytest worker runs hundreds of tests, and JAX keeps every compiled executable (and
    # the constants baked into it) for the life of the process: without this a worker grew
    # past 5 GB half-way through the suite. Dropping the caches after each test module costs
    # only the recompilation of what the next module shares with it.
    yield
    jax.clear_caches()
    gc.collect()
    _trim_heap()

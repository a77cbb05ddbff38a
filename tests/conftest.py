"""Test configuration: float64, strict rank promotion, deterministic hypothesis."""

import os

import jax
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

"""Collocation-point sampling: one rule for every constraint layer.

A uniform subset of m out of c candidates, without replacement, is the set of indices of the m
largest of c iid uniform keys (every ordering of iid keys is equally likely, so every m-subset
is). :func:`uniform_subset` draws the keys as iid uniform 30-bit integers from one
``jax.random.bits`` call and returns the indices of the m largest in ascending (grid) order.
Ties between keys (probability below c / 2^30 that one straddles the cut; ~1e-4 at c = 1e5)
go to the lower index, as in ``jax.lax.top_k``: the selected set is *exactly*
``lax.top_k(keys, m)``'s. It is found in one of two exact ways, chosen by size: ``lax.top_k``
(on float32 images of the keys) followed by a sort of the m indices when m <= c / 32, else,
without any sort, a bisection for the m-th largest key value (30 counting passes over the
candidates) that keeps the keys above it and the first of those equal to it.

Why not the obvious tools: ``jax.random.choice(replace=False)`` draws a full random permutation
(sorts of all c candidates), and XLA's CPU ``top_k`` is fast only for float32 operands and a
small k (with float64 uniforms, or a large k, it sorts). Measured on the 1024 x 101
diffusion-sorption grid (c = 102,200 interior points, 2-core CPU, float64,
``python benchmarks/sampling.py``, benchmarks/results/sampling/sampling.json): ``choice``
costs 41-56 ms per call; this rule ~1-3 ms for m = 1e3 ... 1e5.

Both :class:`~pdeml.constraints.HardConstraint` and
:class:`~pdeml.constraints.MoEHardConstraint` sample with :func:`uniform_subset`; the mixture
passes its experts' membership masks, with the keys drawn from the same key as one ``(K, c)``
block, so a one-expert mixture selects exactly the points of
:class:`~pdeml.constraints.HardConstraint` for the same key.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Int

__all__ = ["sample_points", "uniform_subset"]

_KEY_BITS = 30  # keys in [0, 2^30): an int32 bisection bracket [0, 2^30] never overflows
# top_k (then a sort of the num indices) below num = c / 32, bisection above: the crossover
# measured on a 2-core CPU at c = 102,200 lies between c / 50 and c / 25 for 1 and 4 rows.
_TOP_K_RATIO = 32


def _largest(keys: Int[Array, " c"], num: int) -> Int[Array, " num"]:
    """Ascending indices of the ``num`` largest ``keys`` (ties: lower index first).

    ``keys`` are in ``[0, 2^30)`` or ``-1`` (not a candidate). Two exact ways, chosen by size:
    ``lax.top_k`` where ``num <= c / 32`` (fast for a small k; on XLA's CPU back end only for
    float32 operands, so the keys are mapped to float32 order-preservingly), else a bisection
    for the ``num``-th largest key (no sort, O(30 c) for every ``num``).
    """
    if _TOP_K_RATIO * num <= keys.shape[-1]:
        # keys + 2^23 are the bit patterns of positive *normal* float32 numbers (no denormal
        # that a flush-to-zero unit would tie at 0), ordered as the integers are.
        as_float = jax.lax.bitcast_convert_type(keys + jnp.int32(2**23), jnp.float32)
        as_float = jnp.where(keys < 0, jnp.float32(-1), as_float)
        return jnp.sort(jax.lax.top_k(as_float, num)[1]).astype(jnp.int32)

    def halve(_, bracket):
        # Invariant: count(keys >= lo) >= num > count(keys >= hi).
        lo, hi = bracket
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(keys >= mid, dtype=jnp.int32) >= num
        return jnp.where(enough, mid, lo), jnp.where(enough, hi, mid)

    start = (jnp.zeros((), jnp.int32), jnp.full((), 2**_KEY_BITS, jnp.int32))
    cut, _ = jax.lax.fori_loop(0, _KEY_BITS, halve, start)  # the num-th largest key
    above = keys > cut
    tied = keys == cut
    need = num - jnp.sum(above, dtype=jnp.int32)
    keep = above | (tied & (jnp.cumsum(tied, dtype=jnp.int32) <= need))
    return jnp.nonzero(keep, size=num)[0].astype(jnp.int32)


def uniform_subset(
    key, num: int, candidates: int | Bool[Array, "*batch c"]
) -> Int[Array, "*batch num"]:
    """Indices of ``num`` distinct candidates, a uniform subset without replacement.

    Args:
        key: a JAX PRNG key.
        num: how many to draw (static, ``>= 1``).
        candidates: the number c of candidates (indices ``0 .. c-1``), or a boolean mask
            ``(*batch, c)``: row ``r`` draws ``num`` indices among ``mask[r]``'s ``True``
            entries, independently of the other rows. Every row needs at least ``num``
            candidates (a ``ValueError`` for a concrete mask, a runtime error under ``jit``).

    Returns:
        ``(*batch, num)`` int32 indices into the last axis, ascending in each row. The keys are
        drawn as one block of ``prod(batch) * c`` values, so a mask of shape ``(1, c)`` that is
        all ``True`` gives exactly the indices of ``candidates=c`` for the same key.

    Example:
        >>> import jax
        >>> idx = uniform_subset(jax.random.key(0), 3, 10)
        >>> idx.shape, bool((idx[1:] > idx[:-1]).all()), bool((idx < 10).all())
        ((3,), True, True)
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    num = int(num)
    if isinstance(candidates, (int, np.integer)) and not isinstance(candidates, bool):
        shape, mask = (int(candidates),), None
    else:
        traced = isinstance(candidates, jax.core.Tracer)
        mask = candidates if traced else np.asarray(candidates)
        if mask.dtype != np.bool_ or mask.ndim < 1:
            raise TypeError(f"candidates must be an integer count or a boolean mask (*batch, c), "
                            f"got {mask.dtype} of shape {mask.shape}")
        shape = mask.shape
    if num > shape[-1]:
        raise ValueError(f"num={num} is larger than the {shape[-1]} candidates")
    bits = jax.random.bits(key, (math.prod(shape),), jnp.uint32).reshape(shape)
    keys = (bits >> (32 - _KEY_BITS)).astype(jnp.int32)
    if mask is not None:
        if traced:
            keys = eqx.error_if(keys, jnp.any(jnp.sum(mask, axis=-1) < num),
                                f"a row of the candidates mask has fewer than num={num} entries")
        else:  # checked now, in NumPy (jnp operations would be staged out under jit)
            counts = mask.reshape(-1, shape[-1]).sum(-1)
            if (counts < num).any():
                row = int(np.flatnonzero(counts < num)[0])
                raise ValueError(f"num={num} is larger than the {int(counts[row])} candidates "
                                 f"of row {row} of the candidates mask")
        keys = jnp.where(mask, keys, -1)  # below every candidate's key
    flat = keys.reshape(-1, shape[-1])
    return jax.vmap(lambda k: _largest(k, num))(flat).reshape((*shape[:-1], num))


def sample_points(interior: Int[Array, "q ndim"], num_points: int, key) -> Int[Array, "m ndim"]:
    """Draw ``num_points`` distinct rows of ``interior`` uniformly without replacement.

    The rows come back in the order of ``interior`` (see :func:`uniform_subset`). Raises
    ``ValueError`` if more points are requested than there are candidates.
    """
    q = interior.shape[0]
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)) \
            or num_points < 1:
        raise ValueError(f"num_points must be a positive integer, got {num_points!r}")
    if num_points > q:
        raise ValueError(
            f"num_points={num_points} is larger than the {q} interior grid points of the "
            "problem; use a finer grid or fewer points"
        )
    if num_points == q:
        return interior
    return jnp.take(interior, uniform_subset(key, int(num_points), q), axis=0)

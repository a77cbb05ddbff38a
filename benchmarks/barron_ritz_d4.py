"""Issue 6 acceptance run: natural-gradient Deep Ritz at d = 4 (adaptive damping).

The problem, network and keys of part (c) of benchmarks/barron.py (T2, u* = 2 ridges x 1
harmonic, tanh PeriodicMLP 20 x 2, 621 parameters), with a longer budget than the
20-minute part (c) run. Usage: python benchmarks/barron_ritz_d4.py [STEPS POINTS]
(default 300 8192, ~150 s on a quiet 2-core CPU). Writes
benchmarks/results/barron/c_full/ritz_ng_d4_adaptive.json.
"""
import json, sys, time
sys.path.insert(0, "benchmarks")
import barron as B  # sets float64 like the benchmark
from _common import write_json
import jax
steps, points = (int(sys.argv[1]), int(sys.argv[2])) if len(sys.argv) > 2 else (300, 8192)
d = 4
sol = B.RidgeSum.random(d, key=jax.random.key(1), num_ridges=2, harmonics=1, scale=0.5)
p = B.manufactured_problem(B.SemilinearLagrangian(nu=1.0), sol, d)
net = B.PeriodicMLP.random(d, key=jax.random.key(2), **B.RITZ_NET)
t = time.perf_counter()
r = B.deep_ritz(p, net, key=jax.random.key(3), optimizer="natural_gradient", max_steps=steps, num_points=points, resample=True)
row = {"dim": d, "method": "Deep Ritz (natural gradient, adaptive damping)", "params": net.num_parameters, **B.RITZ_NET,
       "steps": steps, "num_points": points, "rel_l2": float(r.relative_l2), "h1_error": float(r.h1_error),
       "certificate": float(r.certificate), "error_bound": float(r.stats.error_bound),
       "converged": bool(r.converged), "seconds": time.perf_counter() - t,
       "command": f"python benchmarks/barron_ritz_d4.py {steps} {points} (same problem/net/keys as benchmarks/barron.py part c)"}
print(json.dumps(row), flush=True)
write_json("benchmarks/results/barron/c_full/ritz_ng_d4_adaptive.json", row, indent=1)  # atomic

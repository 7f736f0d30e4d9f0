"""How often does the drop-in initialisation check reject a correct layer, and how often does it
catch a wrong scale?

Runs ``dropin.check_init`` (weight and bias as built and after ``reset_parameters()``, each
inside ±1/sqrt(in) and through a Kolmogorov-Smirnov test at ``dropin.KS_ALPHA``) over many
seeds on:

* nn.Linear itself: every rejection is a false one;
* an nn.Linear whose draw is 10% narrower, U(±0.9/sqrt(in)): every value is inside the
  bound, so only the KS test can catch it;
* one 10% wider, U(±1.1/sqrt(in)): the bound catches it;
* one whose bias alone is 10% narrower: the smaller sample (8192 values) must catch it.

and prints the rejection rate of each, and whether the check's own seed passes nn.Linear.

    .venv/bin/python benchmarks/dropin_false_rejection.py [--seeds 200]
"""

from __future__ import annotations

import argparse
import math
import time


def main() -> None:
    import torch
    from torch import nn

    from linear_impls import dropin

    def scaled(factor: float, bias_factor: float | None = None) -> type:
        class Scaled(nn.Linear):
            def reset_parameters(self):
                bound = 1 / math.sqrt(self.in_features)
                nn.init.uniform_(self.weight, -factor * bound, factor * bound)
                b = bias_factor if bias_factor is not None else factor
                nn.init.uniform_(self.bias, -b * bound, b * bound)

        Scaled.__name__ = f"Uniform{factor:g}"
        return Scaled

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="seeds per layer (default 200)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"check_init at INIT_SHAPE {dropin.INIT_SHAPE}, KS_ALPHA {dropin.KS_ALPHA:g}, "
          f"seeds 0..{args.seeds - 1}; the check's own seed is {dropin.INIT_SEED}")
    for label, cls in (("nn.Linear (correct)", nn.Linear), ("U(±0.9/sqrt(in))", scaled(0.9)),
                       ("U(±1.1/sqrt(in))", scaled(1.1)), ("bias only U(±0.9/sqrt(in))", scaled(1.0, 0.9))):
        start, rejected, example = time.perf_counter(), [], ""
        for seed in range(args.seeds):
            try:
                dropin.check_init(cls, seed)
            except dropin.DropInFailure as exc:
                rejected.append(seed)
                example = example or str(exc)
        print(f"{label:<28} rejected {len(rejected):>4} of {args.seeds} seeds ({len(rejected) / args.seeds:.1%})"
              f"  [{time.perf_counter() - start:.0f} s]" + (f"  seeds {rejected[:10]}" if 0 < len(rejected) < 10
                                                               else ""))
        if example:
            print(f"{'':<28} e.g. {example[:160]}")
    try:
        dropin.check_init(nn.Linear, dropin.INIT_SEED)
        print(f"the check's seed {dropin.INIT_SEED}: nn.Linear passes")
    except dropin.DropInFailure as exc:
        print(f"the check's seed {dropin.INIT_SEED}: nn.Linear REJECTED: {exc}")


if __name__ == "__main__":
    main()

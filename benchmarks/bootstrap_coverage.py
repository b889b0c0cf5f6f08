"""Coverage of the macro AUROC / AUPRC bootstrap intervals, by simulation.

A synthetic multi-label population shaped like the PTB-XL subset's test fold
(fold 9: 245 records, 49 scored classes). Per class c: a record is positive
with probability `p_c = count_c / 245`, where `count_c` are the fold's
positive counts (hard-coded below, counted with keras_ecg's `all` label set
over the classes with a positive training record in folds 1-7); labels are
independent across classes. Scores are binormal: negatives N(0, 1), positives
N(d_c, 1) with `d_c = sqrt(2) Phi^-1(auroc_c)` and `auroc_c` drawn uniformly
in [0.6, 0.95] (a moderate model).

The true value is the population macro metric: per class, AUROC is
`Phi(d_c / sqrt(2))` and AP is the population average precision
`integral of precision(s) dF_1(s)` with `precision(s) = p S_1(s) / (p S_1(s)
+ (1 - p) S_0(s))` (numerical integration; checked against scikit-learn on a
200k-record sample from the same generator). A replication draws n = 245
records; the classes with both outcomes in it are scored (as the library
does), and the truth of that replication is the mean of the population
per-class values over those same classes.

Every replication computes all intervals from one set of resamples (the
library's `_resampled_metric`, `_jackknife`, `_interval`; the same code
`bootstrap_macro_metrics` runs), and conditional resampling from
`conditional_resamples` with the same seed. Single process.

    python benchmarks/bootstrap_coverage.py --replications 200 --resamples 1000
"""

import argparse
import json
import os
import time

import numpy as np
from scipy.stats import norm

# Positive counts of the 49 scored classes on the subset's fold 9 (245 records).
FOLD9_COUNTS = (
    [1] * 9
    + [2] * 2
    + [3] * 5
    + [4]
    + [5] * 8
    + [6] * 6
    + [7] * 4
    + [12, 12, 14, 15, 18, 18, 18, 21, 23, 25, 27, 28, 111, 189]
)
N_TEST = 245
METHODS = (
    ("percentile", "all"),
    ("basic", "all"),
    ("shifted", "all"),
    ("bca", "all"),
    ("percentile", "conditional"),
    ("basic", "conditional"),
    ("shifted", "conditional"),
)


def population(seed):
    """Prevalence, separation, and the population per-class AUROC and AP."""
    rng = np.random.default_rng(seed)
    prevalence = np.asarray(FOLD9_COUNTS, dtype=np.float64) / N_TEST
    auroc = rng.uniform(0.6, 0.95, size=len(prevalence))
    separation = np.sqrt(2) * norm.ppf(auroc)
    grid = np.linspace(-12, 16, 400_001)
    ap = []
    for p, d in zip(prevalence, separation, strict=True):
        s1, s0 = norm.sf(grid - d), norm.sf(grid)
        precision = p * s1 / (p * s1 + (1 - p) * s0)
        ap.append(np.trapezoid(precision * norm.pdf(grid - d), grid))
    return prevalence, separation, auroc, np.asarray(ap)


def draw(rng, prevalence, separation, n):
    y = (rng.random((n, len(prevalence))) < prevalence).astype(np.int64)
    scores = rng.normal(size=y.shape) + y * separation
    return y, scores


def large_sample_check(prevalence, separation, seed, n=200_000):
    from sklearn.metrics import average_precision_score
    from sklearn.metrics import roc_auc_score

    y, s = draw(np.random.default_rng(seed), prevalence, separation, n)
    return (
        np.array([roc_auc_score(y[:, c], s[:, c]) for c in range(y.shape[1])]),
        np.array(
            [average_precision_score(y[:, c], s[:, c]) for c in range(y.shape[1])]
        ),
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--max-draws-factor", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="write the raw results here")
    args = parser.parse_args()

    from machine import cpu_name
    from machine import usable_cores

    from keras_ecg.evaluation.bootstrap import _interval
    from keras_ecg.evaluation.bootstrap import _jackknife
    from keras_ecg.evaluation.bootstrap import _point
    from keras_ecg.evaluation.bootstrap import _resampled_metric
    from keras_ecg.evaluation.bootstrap import bootstrap_resamples
    from keras_ecg.evaluation.bootstrap import conditional_resamples

    started, cpu_started = time.time(), time.process_time()
    prevalence, separation, auroc, ap = population(args.seed)
    truth_per_class = {"macro_auroc": auroc, "macro_auprc": ap}
    big_auroc, big_ap = large_sample_check(prevalence, separation, args.seed + 1)
    print(
        f"Population: {len(prevalence)} classes, positive counts per "
        f"{N_TEST} records {FOLD9_COUNTS} (PTB-XL subset fold 9), class AUROC "
        f"U(0.6, 0.95) seed {args.seed}; population macro AUROC "
        f"{auroc.mean():.4f}, macro AP {ap.mean():.4f} (integral); 200k-record "
        f"sample: {big_auroc.mean():.4f}, {big_ap.mean():.4f} (max class "
        f"|diff| {np.abs(big_auroc - auroc).max():.4f}, "
        f"{np.abs(big_ap - ap).max():.4f})"
    )

    records = {(m, r, k): [] for m, r in METHODS for k in truth_per_class}
    estimates = {k: [] for k in truth_per_class}
    acceptance, capped, scored_counts = [], 0, []
    rng = np.random.default_rng(args.seed + 2)
    for rep in range(args.replications):
        y, s = draw(rng, prevalence, separation, N_TEST)
        num_pos = y.sum(axis=0)
        keep = (num_pos > 0) & (num_pos < N_TEST)
        scored_counts.append(int(keep.sum()))
        y, scores = y[:, keep], s[None][..., keep]
        resamples = bootstrap_resamples(N_TEST, args.resamples, seed=rep)
        max_draws = args.max_draws_factor * args.resamples
        conditional, draws = conditional_resamples(
            y, args.resamples, seed=rep, max_draws=max_draws
        )
        acceptance.append(len(conditional) / draws)
        capped += len(conditional) < args.resamples
        for metric, per_class in truth_per_class.items():
            truth = per_class[keep].mean()
            point = _point(metric, y, scores)
            estimates[metric].append((point, truth))
            values = {
                "all": _resampled_metric(metric, y, scores, resamples, 100),
                "conditional": _resampled_metric(metric, y, scores, conditional, 100),
            }
            jackknife = _jackknife(metric, y, scores, 100)
            for method, resampling in METHODS:
                low, high = _interval(
                    method, point, values[resampling], 0.95, jackknife
                )
                records[(method, resampling, metric)].append((low, high, truth, point))
        if (rep + 1) % 20 == 0:
            print(
                f"  {rep + 1}/{args.replications} replications, "
                f"{time.process_time() - cpu_started:.0f} s CPU",
                flush=True,
            )

    estimates = {k: np.asarray(v) for k, v in estimates.items()}
    print(
        f"\n{args.replications} replications of n = {N_TEST} records; "
        f"{args.resamples} resamples each (seeded by replication); scored "
        f"classes per replication {np.min(scored_counts)}-"
        f"{np.max(scored_counts)} (mean {np.mean(scored_counts):.1f}); "
        f"conditional resampling kept {np.mean(acceptance):.2%} of draws "
        f"(min {np.min(acceptance):.2%}), cap {args.max_draws_factor} x "
        f"resamples hit in {capped} replications"
    )
    for metric, pairs in estimates.items():
        print(
            f"{metric}: mean truth {pairs[:, 1].mean():.4f}, mean point "
            f"{pairs[:, 0].mean():.4f} (estimator bias "
            f"{(pairs[:, 0] - pairs[:, 1]).mean():+.4f}, sd "
            f"{pairs[:, 0].std(ddof=1):.4f})"
        )
    print(
        "\n| interval | resampling | AUROC coverage | AUROC width | AUROC miss "
        "below/above | AUROC point inside | AUPRC coverage | AUPRC width | AUPRC "
        "miss below/above | AUPRC point inside |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = []
    for method, resampling in METHODS:
        cells = [method, resampling]
        row = {"interval": method, "resampling": resampling}
        for metric in truth_per_class:
            a = np.asarray(records[(method, resampling, metric)])
            low, high, truth, point = a.T
            covered = np.mean((low <= truth) & (truth <= high))
            # Truth above the interval: the interval missed below it.
            below, above = np.mean(high < truth), np.mean(low > truth)
            inside = np.mean((low <= point) & (point <= high))
            width = np.mean(high - low)
            se = np.sqrt(covered * (1 - covered) / len(a))
            cells += [
                f"{covered:.1%} ± {se:.1%}",
                f"{width:.4f}",
                f"{below:.1%} / {above:.1%}",
                f"{inside:.0%}",
            ]
            row[metric] = {
                "coverage": covered,
                "width": width,
                "interval_below_truth": below,
                "interval_above_truth": above,
                "point_inside": inside,
            }
        summary.append(row)
        print("| " + " | ".join(cells) + " |")
    print(
        "\ncoverage ± its binomial standard error; 'miss below/above': the "
        "interval lies below / above the true value."
    )
    print(
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()} "
        f"({usable_cores()} usable cores, single process); "
        f"{(time.time() - started) / 60:.1f} min wall, "
        f"{(time.process_time() - cpu_started) / 60:.1f} min CPU."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "summary": summary}, f, indent=1)
        print(f"wrote {os.path.abspath(args.json)}")


if __name__ == "__main__":
    main()

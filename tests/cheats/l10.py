"""Shortcuts for Lesson 10 (choosing a strategy): each must score 0 on the exercise it targets."""
from grader.cheats import Cheat

CHEATS = [
    Cheat("imagenet_familiarity", "delegates to utils.backbones.decode_imagenet", '''
from utils.backbones import decode_imagenet


def imagenet_familiarity(logits):
    return sum(row[0][1] for row in decode_imagenet(logits, k=1)) / len(logits)
'''),
    Cheat("imagenet_familiarity", "a softmax without the max shift (overflows on large logits)", '''
def imagenet_familiarity(logits):
    e = logits.float().exp()
    return float((e / e.sum(dim=1, keepdim=True)).max(dim=1).values.mean())
'''),
    Cheat("configure_strategy", "requires_grad only, with frozen_bn_modules and count_trainable redefined to agree",
          '''
STRATEGIES = ("probe", "top", "all", "scratch")


def configure_strategy(model, strategy, top_stages=3):
    if strategy not in STRATEGIES:
        raise ValueError(strategy)
    model.requires_grad_(True)
    frozen = {"probe": model.feature_stages, "top": model.feature_stages[:-top_stages]}.get(strategy, [])
    for stage in frozen:
        model.get_submodule(stage).requires_grad_(False)
        model.get_submodule(stage).eval()
    return model


def frozen_bn_modules(model):
    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.weight.requires_grad}
'''),
    Cheat("configure_strategy", "counts top_stages over all stages (the head included), no unfreeze first", '''
STRATEGIES = ("probe", "top", "all", "scratch")


def configure_strategy(model, strategy, top_stages=3):
    if strategy not in STRATEGIES:
        raise ValueError(strategy)
    if strategy == "probe":
        freeze(model, model.feature_stages)
    elif strategy == "top":
        freeze(model, model.stages[:-top_stages])
    return model
'''),
    Cheat("results_table", "hard-codes the visible table", '''
def results_table(records):
    records = list(records)
    if any(r["acc"] > 1 for r in records):
        raise ValueError("percentages")
    return {(10, "similar"): {"probe": 0.85, "all": 0.70}, (500, "dissimilar"): {"scratch": 0.60}}
'''),
    Cheat("results_table", "accepts negative accuracies (checks only > 1)", '''
import statistics


def results_table(records):
    cells = {}
    for r in records:
        if r["acc"] > 1:
            raise ValueError("accuracy must be a fraction")
        cells.setdefault((r["n_per_class"], r["similarity"]), {}).setdefault(r["strategy"], []).append(r["acc"])
    return {cell: {s: float(statistics.fmean(a)) for s, a in by.items()} for cell, by in cells.items()}
'''),
    Cheat("verdict", "ignores alpha (always 0.05)", '''
def verdict(correct_a, correct_b, alpha=0.05):
    a, b_ = [bool(v) for v in list(correct_a)], [bool(v) for v in list(correct_b)]
    if len(a) != len(b_) or not a or not 0 < alpha < 1:
        raise ValueError("bad input")
    b = sum(x and not y for x, y in zip(a, b_))
    c = sum(y and not x for x, y in zip(a, b_))
    if b + c == 0:
        return "inconclusive"
    p = min(1.0, 2 * sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c))
    return ("supported" if b > c else "contradicted") if p < 0.05 else "inconclusive"
'''),
    Cheat("verdict", "one-sided p-value (the tail is not doubled)", '''
def verdict(correct_a, correct_b, alpha=0.05):
    a, b_ = [bool(v) for v in list(correct_a)], [bool(v) for v in list(correct_b)]
    if len(a) != len(b_) or not a or not 0 < alpha < 1:
        raise ValueError("bad input")
    b = sum(x and not y for x, y in zip(a, b_))
    c = sum(y and not x for x, y in zip(a, b_))
    if b + c == 0:
        return "inconclusive"
    p = sum(math.comb(b + c, k) for k in range(min(b, c) + 1)) / 2 ** (b + c)
    return ("supported" if b > c else "contradicted") if p < alpha else "inconclusive"
'''),
    Cheat("verdict", "McNemar's chi-square approximation instead of the exact test", '''
def verdict(correct_a, correct_b, alpha=0.05):
    a, b_ = [bool(v) for v in list(correct_a)], [bool(v) for v in list(correct_b)]
    if len(a) != len(b_) or not a or not 0 < alpha < 1:
        raise ValueError("bad input")
    b = sum(x and not y for x, y in zip(a, b_))
    c = sum(y and not x for x, y in zip(a, b_))
    if b + c == 0:
        return "inconclusive"
    chi2 = (abs(b - c) - 1) ** 2 / (b + c)
    p = math.erfc(math.sqrt(chi2 / 2))
    return ("supported" if b > c else "contradicted") if p < alpha else "inconclusive"
'''),
    Cheat("verdict", "unpaired: the two accuracies compared with their binomial standard errors", '''
def verdict(correct_a, correct_b, alpha=0.05):
    a, b_ = [float(bool(v)) for v in list(correct_a)], [float(bool(v)) for v in list(correct_b)]
    if len(a) != len(b_) or not a or not 0 < alpha < 1:
        raise ValueError("bad input")
    n = len(a)
    pa, pb = sum(a) / n, sum(b_) / n
    noise = math.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)
    if noise == 0:
        return "inconclusive" if pa == pb else ("supported" if pa > pb else "contradicted")
    z = (pa - pb) / noise
    p = math.erfc(abs(z) / math.sqrt(2))
    return ("supported" if z > 0 else "contradicted") if p < alpha else "inconclusive"
'''),
    Cheat("verdict", "delegates to scipy.stats.binomtest", '''
def verdict(correct_a, correct_b, alpha=0.05):
    from scipy.stats import binomtest
    a, b_ = [bool(v) for v in list(correct_a)], [bool(v) for v in list(correct_b)]
    if len(a) != len(b_) or not a or not 0 < alpha < 1:
        raise ValueError("bad input")
    b = sum(x and not y for x, y in zip(a, b_))
    c = sum(y and not x for x, y in zip(a, b_))
    if b + c == 0:
        return "inconclusive"
    p = binomtest(b, b + c, 0.5).pvalue
    return ("supported" if b > c else "contradicted") if p < alpha else "inconclusive"
'''),
    Cheat("recommend_strategy", "a justification made of the input strings", '''
SMALL_LIMIT = 100


def recommend_strategy(n_per_class, similarity):
    if similarity not in ("similar", "dissimilar") or n_per_class < 1:
        raise ValueError("bad input")
    s = {(True, "similar"): "probe", (True, "dissimilar"): "probe_early",
         (False, "similar"): "top", (False, "dissimilar"): "all"}[(n_per_class < SMALL_LIMIT, similarity)]
    return s, f"{n_per_class} {similarity} {s}"
'''),
    Cheat("recommend_strategy", "every key word and both size classes in one template", '''
SMALL_LIMIT = 100


def recommend_strategy(n_per_class, similarity):
    if similarity not in ("similar", "dissimilar") or n_per_class < 1:
        raise ValueError("bad input")
    s = {(True, "similar"): "probe", (True, "dissimilar"): "probe_early",
         (False, "similar"): "top", (False, "dissimilar"): "all"}[(n_per_class < SMALL_LIMIT, similarity)]
    return s, (f"{n_per_class} images per class (small or large against {SMALL_LIMIT}), {similarity} data: "
               f"use {s}, so as not to overfit, to stay generic, to adapt, or to retrain every layer.")
'''),
    Cheat("recommend_strategy", "the right size class, but every strategy's key word listed", '''
SMALL_LIMIT = 100


def recommend_strategy(n_per_class, similarity):
    if similarity not in ("similar", "dissimilar") or n_per_class < 1:
        raise ValueError("bad input")
    small = n_per_class < SMALL_LIMIT
    s = {(True, "similar"): "probe", (True, "dissimilar"): "probe_early",
         (False, "similar"): "top", (False, "dissimilar"): "all"}[(small, similarity)]
    size = "small" if small else "large"
    return s, f"{n_per_class} is {size} vs {SMALL_LIMIT}, {similarity}: {s} (overfit, generic, adapt, every layer)"
'''),
    Cheat("recommend_strategy", "moves the limit (SMALL_LIMIT redefined to 50) so the visible cases still pass", '''
SMALL_LIMIT = 50
_WHY = {"probe": "training more parameters would overfit", "probe_early": "an earlier stage is more generic",
        "top": "enough labels to adapt the top stages", "all": "enough labels to retrain every layer"}


def recommend_strategy(n_per_class, similarity):
    if similarity not in ("similar", "dissimilar") or n_per_class < 1:
        raise ValueError("bad input")
    small = n_per_class < SMALL_LIMIT
    s = {(True, "similar"): "probe", (True, "dissimilar"): "probe_early",
         (False, "similar"): "top", (False, "dissimilar"): "all"}[(small, similarity)]
    size = "small" if small else "large"
    return s, f"{n_per_class} images per class is {size} (limit {SMALL_LIMIT}), {similarity} data: {_WHY[s]}, so {s}."
'''),
]

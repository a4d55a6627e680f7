"""The line every benchmark ends with, one per target, which `make bench`
(bench/run-all) gathers into one table:

    summary<TAB>BENCH<TAB>WHAT<TAB>VALUE<TAB>OP TARGET<TAB>met|MISSED

VALUE has two decimals; OP is >= or <=."""


def line(bench, what, value, op, target):
    met = value >= target if op == ">=" else value <= target
    print(f"summary\t{bench}\t{what}\t{value:.2f}\t{op} {target:g}\t{'met' if met else 'MISSED'}",
          flush=True)
    return met


def report(bench, rows):
    """rows: (what, value, op, target). Prints each; returns the exit code
    (0 only when every target is met)."""
    met = [line(bench, *r) for r in rows]
    return 0 if all(met) else 1

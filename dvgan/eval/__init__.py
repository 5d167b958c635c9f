"""Evaluation: probes (the paper's Table 1), retrieval, analogies against the truth, figures.

evaluate(run_dir) measures one run; compare(run_dirs) puts several side by side (the lambda = 0
ablation beside the full model); report.write_report writes report.json and report.md.
"""
from .suite import compare, evaluate

__all__ = ["evaluate", "compare"]

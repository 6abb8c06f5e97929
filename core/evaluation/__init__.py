"""Comparing encoders on one label: separability metrics and few-shot curves, as the CLI's JSON, in
the store, and in words.

metrics.py       the headline metrics and `evaluate_encoders` (arrays in, JSON-ready dicts out, paired comparisons)
label_values.py  what a label name means per note (`resolve_labels`), and hashes of values for cache keys
corpus.py        `evaluate_corpus`, `fewshot_corpus`, `audit_corpus`: on a corpus in the store, kept as runs
tables.py        numbers with intervals, verdicts and tables for people (pages, the Markdown report)
"""

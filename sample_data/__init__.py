"""Demo corpora built from installed packages (never copied text) plus a synthetic generator."""

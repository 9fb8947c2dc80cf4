"""The house rules: architecture, layout, docs and examples that run."""

"""Golden results: fixed scenarios whose summaries and request-table hashes every change
to the simulator must reproduce (``tests/test_golden.py``). Regenerate on purpose only,
with ``python -m tests.golden`` (and say why in the commit message)."""

"""Benchmarks and the regression gate behind ``convcore bench``.

Modules, one concern each: :mod:`.configs` (grids and suites), :mod:`.measure` (timing
and the gate's worker process), :mod:`.sweep` (engine against the reference),
:mod:`.stats` (the gate's statistics), :mod:`.gate` (the two gate modes),
:mod:`.report` (tables, JSON, CSV, plot) and :mod:`.cli` (the command line).
"""

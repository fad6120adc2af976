"""Fuzzing of every parser fed from outside: a quick run in CI, a million inputs each on demand.

``python -m tests.fuzz --inputs 1000000`` runs the long mode; ``--engine atheris`` uses the
coverage-guided fuzzer where it is installed. See docs/security.md.
"""

"""Coverage-guided fuzzing of one target with atheris (libFuzzer for Python).

``python -m tests.fuzz.atheris_main TARGET [CORPUS_DIR] [libFuzzer flags]``; the runner
(``python -m tests.fuzz --engine atheris``) calls it. Any exception escaping the target stops the
run with the input saved under ``-artifact_prefix``.
"""

from __future__ import annotations

import sys


def main() -> None:
    import atheris

    name, rest = sys.argv[1], sys.argv[2:]
    with atheris.instrument_imports(include=["drivers", "gateway"]):
        from tests.fuzz.targets import TARGETS

    target = TARGETS[name]
    atheris.Setup([sys.argv[0], *rest], target.run)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

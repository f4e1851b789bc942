"""Worker entry run on every process: `python -m tulu_cli.train.worker RUN_DIR/tulu_options.json`.

The file holds ``{"recipe": NAME, "options": {...}, "deepspeed_config": {...}|null}``; the recipe
class is ``tulu_cli.train.<NAME>.Recipe``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from pathlib import Path

from tulu_cli.errors import TuluError

ERROR_FILE = ".tulu_error"


def load_recipe(payload: dict):
    module = importlib.import_module(f"tulu_cli.train.{payload['recipe']}")
    cls = module.Recipe
    opts = cls.options_class.model_validate(payload["options"])
    return cls(opts, payload.get("deepspeed_config"))


def run_worker(options_file: str | Path) -> Path:
    payload = json.loads(Path(options_file).read_text())
    return load_recipe(payload).run()


def reset_accelerate_state() -> None:
    """Forget the process-wide accelerate singletons so another in-process run can start fresh."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tulu_cli.train.worker RUN_DIR/tulu_options.json", file=sys.stderr)
        return 2
    import warnings

    # torch's own collectives warn about themselves once per call under DeepSpeed; not the user's business.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed")
    try:
        run_worker(args[0])
    except TuluError as e:
        # The launcher re-raises this as its own one-line error (exit 2).
        if os.environ.get("RANK", "0") == "0":
            (Path(args[0]).parent / ERROR_FILE).write_text(e.message)
            print(f"error: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the launcher says in one line what was kept
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

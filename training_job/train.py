"""SageMaker training entry point: `train` (or `python train.py`) inside the container.

Reads the dataset from SM_CHANNEL_TRAIN (default /opt/ml/input/data/train) and hyperparameters from
/opt/ml/input/config/hyperparameters.json and the command line (the command line wins); writes
export.pkl, model.onnx, model.int8.onnx (when it passes its check against fp32) and model.json to SM_MODEL_DIR
and the report to SM_OUTPUT_DATA_DIR.
On failure it writes a one-paragraph reason to the failure file and exits non-zero.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

# The job's package sits next to this file (/opt/ml/code in the image), whatever the working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from imgclf_trainjob.config import load_config  # noqa: E402
from imgclf_trainjob.errors import JobFailure, failure_file_path, write_failure  # noqa: E402

log = logging.getLogger("imgclf_trainjob")

EXIT_BAD_INPUT = 1
EXIT_INTERNAL = 2


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    """Run the job and return the process exit code; failures end up in the failure file."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout, force=True)
    failure_file = failure_file_path(env)
    try:
        config = load_config(sys.argv[1:] if argv is None else argv, env)
        failure_file = config.paths.failure_file
        # Imported here so that a bad argument fails fast, before torch and fastai load.
        from imgclf_trainjob.job import run

        run(config, env)
    except JobFailure as exc:
        log.error("Training failed: %s", exc)
        write_failure(failure_file, f"Training failed: {exc}")
        return EXIT_BAD_INPUT
    except Exception as exc:
        log.exception("Training failed with an unexpected error")
        detail = str(exc).rstrip(". ") or "no message"
        write_failure(failure_file, f"Training failed with an unexpected error ({type(exc).__name__}): "
                                    f"{detail}. See the job log for the traceback.")
        return EXIT_INTERNAL
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print the OpenAPI document the API serves: `python -m imgclf_api > docs/openapi.json`."""

from __future__ import annotations

import json
import sys

from .app import openapi_document


def main() -> int:
    json.dump(openapi_document(), sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

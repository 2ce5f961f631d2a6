"""Regenerates src/graft/export/tfjs_ops.json: the TensorFlow ops TF.js graph models can run.

The list is read from the op mappers of the pinned `@tensorflow/tfjs-converter` npm package
(dist/operations/op_list/*.js, one entry per `tfOpName`), installed by `make test` under
tests/js/node_modules. Run after changing the TF.js version in tests/js/package.json:

    python tools/tfjs_ops.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tests/js/node_modules/@tensorflow/tfjs-converter"
OUT = ROOT / "src/graft/export/tfjs_ops.json"


def main() -> None:
    version = json.loads((PACKAGE / "package.json").read_text())["version"]
    ops = set()
    for path in sorted((PACKAGE / "dist/operations/op_list").glob("*.js")):
        ops |= set(re.findall(r"""['"]tfOpName['"]\s*:\s*['"](\w+)['"]""", path.read_text()))
    document = {
        "source": f"@tensorflow/tfjs-converter {version} (npm), "
        "dist/operations/op_list/*.js: every tfOpName",
        "ops": sorted(ops),
    }
    OUT.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{len(ops)} ops from tfjs-converter {version} -> {OUT}")


if __name__ == "__main__":
    main()

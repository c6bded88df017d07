"""Write (or, with --check, compare) the committed dashboards/*.json.

.venv/bin/python dashboards/generate.py           # regenerate
.venv/bin/python dashboards/generate.py --check   # exit 1 if a file is stale
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wkdash import OUT, files

COMMAND = ".venv/bin/python dashboards/generate.py"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    wanted = files()
    stale = sorted(p.name for p, text in wanted.items() if not p.exists() or p.read_text() != text)
    extra = sorted(p.name for p in OUT.glob("wattkeeper-*.json") if p not in wanted)
    if args.check:
        if stale or extra:
            print(f"stale: {', '.join(stale + extra)}; regenerate with: {COMMAND}")
            return 1
        return 0
    for path, text in wanted.items():
        path.write_text(text)
    for name in extra:
        (OUT / name).unlink()
    print(f"wrote {len(wanted)} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m nbinpaint.serve.bench``: the workshop benchmark's first name, now `nbinpaint.bench.serve`.

Kept so the command in older notes and shell histories still runs; every benchmark lives under `nbinpaint.bench`.
"""

from nbinpaint.bench.serve import main

if __name__ == "__main__":
    raise SystemExit(main())

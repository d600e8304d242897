"""``python -m nbinpaint.bench``: see `nbinpaint.bench`."""

import sys

from nbinpaint.bench import main

if __name__ == "__main__":
    sys.exit(main())

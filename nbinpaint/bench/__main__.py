"""``python -m nbinpaint.bench``: see `nbinpaint.bench`."""

import sys

from nbinpaint.bench import main

sys.exit(main())

"""``python -m e5rag ...`` (and ``torchrun -m e5rag train ...``): the ``e5rag`` command."""

import sys

from e5rag.cli import main

sys.exit(main())

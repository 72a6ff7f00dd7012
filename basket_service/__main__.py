"""`python -m basket_service`: see basket_service.cli."""

import sys

from basket_service.cli import main

sys.exit(main())

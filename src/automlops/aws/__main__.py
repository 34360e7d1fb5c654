"""`python -m automlops.aws`: operator tasks on a deployed stage (see automlops.aws.ops)."""

import sys

from automlops.aws.ops import main

sys.exit(main())

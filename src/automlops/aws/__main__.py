"""`python -m automlops.aws ...`: an alias of `automlops aws ...` (see automlops.aws.ops)."""

from automlops.aws.ops import aws_app

aws_app(prog_name="python -m automlops.aws")

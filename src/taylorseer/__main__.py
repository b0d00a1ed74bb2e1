"""`python -m taylorseer ...` and `torchrun --nproc_per_node K -m taylorseer ...`: the command line."""

import sys

from taylorseer.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""The learning benchmark, sac-cli against Stable-Baselines3 SAC at equal steps:

    python benchmarks/learning.py --env Pendulum-v1 --steps 15000 --seeds 0 1 2 3 4 \
        --eval-every 5000 --out DIR --jobs 2 [--no-sb3] [--set KEY=VALUE ...]

What it runs and reports: sac_cli.bench.learning; the command: sac_cli.cli.learning.
"""

import sys

from sac_cli.cli.learning import main

if __name__ == "__main__":
    sys.exit(main())

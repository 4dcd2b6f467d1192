"""The learning benchmark: sac-cli against Stable-Baselines3 SAC at equal steps, evaluated alike.

    python benchmarks/learning.py --env Pendulum-v1 --steps 15000 --seeds 0 1 2 3 4 \
        --eval-every 5000 --out DIR --jobs 2 [--no-sb3] [--set KEY=VALUE ...]

For every environment and seed it runs

- sac-cli through its real command line, as a subprocess:
  ``sac-train env=ENV seed=N total_steps=STEPS eval.every=E eval.episodes=10
  logger.mode=disabled threads=1 hydra.run.dir=DIR/ENV/sac-cli/seed=N [--set overrides]``;
- Stable-Baselines3 SAC (when installed, unless ``--no-sb3``), also as a subprocess
  (``python -m sac_cli.cli.learning --sb3-worker``), with the hyperparameters of sac-cli's
  composed config
  (``sac-train ... --cfg job``): same hidden sizes and activation, learning rate, batch size,
  buffer size, tau, gamma, learning_starts, gradient steps per env step, target update
  interval, number of critics, initial temperature and target entropy (-dim(A) unless set),
  one torch thread, CPU.

Both are evaluated the same way: the deterministic policy (the squashed mean action), 10
episodes on an environment separate from the training one, every ``--eval-every`` steps and
at the end, with the episode seeds of ``sac_cli.seeding.eval_seeds(seed, step, episodes)``.
sac-cli's agent acts in [-1, 1] (envs.make_env rescales); SB3 is evaluated on the raw
gymnasium environment through ``model.predict(obs, deterministic=True)``, which maps its
squashed action to the same bounds with the same affine map. One difference in timing: SB3
calls callbacks after the environment step and before that step's gradient update, so its
evaluation at step t has seen t - learning_starts - 1 updates where sac-cli's has seen one
more.

Each run is a directory sac-plot understands (``metrics.jsonl`` plus ``.hydra/config.yaml``
and ``.hydra/overrides.yaml``): DIR/ENV/sac-cli/seed=N (written by sac-train and Hydra) and
DIR/ENV/sb3/seed=N (written here; its overrides are ``impl=sb3`` and the seed). A run whose
metrics already hold the final evaluation is not run again; an interrupted sac-cli run resumes
from its checkpoint, an interrupted SB3 run starts over.

Finally it groups the runs by implementation, plots the evaluation return (mean over seeds
and its 95% bootstrap CI, sac_cli.cli.plot) to DIR/learning_curves.png/.svg and writes
DIR/learning.md: per environment, each implementation's number of seeds, final return (mean
and 95% CI), best return, the mean return at each evaluation step and the training speed.
The table is printed too. ``--report-only`` redoes table and plot from the runs in DIR.
"""

# Parts: jobs.py (the runs and their commands), sb3.py (the peer: its settings from sac-cli's
# config, its worker), report.py (table, comparison, curves); cli/learning.py is the command.

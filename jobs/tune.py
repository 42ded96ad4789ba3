"""The search service: see ``ot_ray.cli.tune``.

python jobs/tune.py                      # the offline demo sweep on a local Ray
ray job submit --working-dir . -- python jobs/tune.py --config configs/demo.yaml
"""

from ot_ray.cli import run, tune

if __name__ == "__main__":
    run(tune)

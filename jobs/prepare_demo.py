"""Build the offline demo world: ``python jobs/prepare_demo.py --out DIR [--seed N]``."""

from ot_ray.cli import prepare_demo, run

if __name__ == "__main__":
    run(prepare_demo)

"""One trial end to end on Ray Train: see ``ot_ray.cli.train``."""

from ot_ray.cli import run, train

if __name__ == "__main__":
    run(train)

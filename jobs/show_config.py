"""Validate a config (with --set overrides) and print it resolved, as YAML the jobs accept."""

from ot_ray.cli import run, show_config

if __name__ == "__main__":
    run(show_config)

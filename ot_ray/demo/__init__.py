"""The offline demo world: generated multilingual data in the real formats and a tiny encoder.

``ensure_demo_world(config.data.demo)`` returns the directory of a complete world, building it on
first use; ``python jobs/prepare_demo.py --out DIR`` builds one explicitly.
"""

from ot_ray.demo.build import check_world, ensure_demo_world, world_dir

__all__ = ["check_world", "ensure_demo_world", "world_dir"]

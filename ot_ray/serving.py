"""Log the aligned encoder as a registered MLflow model (see :mod:`ot_ray.serving_model`).

Registered after a sweep so the best encoder can be loaded by name (``models:/<name>/<version>``)
or served (``mlflow models serve``) without this repository's training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow


def log_encoder_model(encoder_dir: str, *, registered_name: str | None, layer: int = -1) -> Any:
    """Log ``encoder_dir`` (``save_pretrained`` output) as a pyfunc model in the active run;
    it embeds with hidden state ``layer`` (0 the embeddings, -1 the last layer), the one the
    trial aligned."""
    import torch
    import transformers

    return mlflow.pyfunc.log_model(
        name="aligned_encoder",
        python_model=str(Path(__file__).with_name("serving_model.py")),
        artifacts={"encoder": encoder_dir},
        input_example=["a sentence to embed", "ein Satz"],
        model_config={"layer": layer, "max_length": _positions(encoder_dir)},
        pip_requirements=[
            f"torch=={torch.__version__.split('+')[0]}",
            f"transformers=={transformers.__version__}",
            f"mlflow=={mlflow.__version__}",
        ],
        registered_model_name=registered_name,
    )


def _positions(encoder_dir: str) -> int | None:
    """Tokens the encoder's position embeddings hold (as the trial's checks count them): the
    served model truncates there, not with an index error. None: no absolute positions."""
    from transformers import AutoConfig

    from ot_ray.preflight import position_limit

    return position_limit(AutoConfig.from_pretrained(encoder_dir))

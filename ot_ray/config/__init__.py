"""One typed configuration tree for the whole system, loaded from YAML plus ``--set`` overrides.

Every section forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Validation errors are rewritten into one line per problem that names the file and line (or the
override), the dotted key, what was expected and what was found.

The modules: ``fields`` (the section base and number types), ``data``, ``stages`` and ``search``
(the sections), ``tree`` (the whole tree and its cross-section checks), ``metric_names``,
``keys`` (dotted keys), ``yaml_files`` (reading files), ``messages`` (error lines) and
``loading`` (file + overrides -> tree).
"""

from ot_ray.config.data import (
    LOCAL_FILE_BUILDERS,
    DataConfig,
    DemoConfig,
    EncoderPretraining,
    NLISources,
    ParallelSources,
    QASources,
    SourceSpec,
    WorldSizes,
)
from ot_ray.config.keys import flatten, is_config_key
from ot_ray.config.loading import load_config, load_config_data, parse_override
from ot_ray.config.metric_names import LANGUAGE_AVERAGES, unknown_metric
from ot_ray.config.search import (
    ParamSpec,
    SchedulerConfig,
    TuneConfig,
    condition_holds,
    sampling_order,
)
from ot_ray.config.stages import (
    AlignmentConfig,
    LinkNoise,
    ModelConfig,
    OTConfig,
    QATrainConfig,
    SinkhornConfig,
    TaskConfig,
    TaskTrainConfig,
    TrainConfig,
)
from ot_ray.config.tree import Config, TrackingConfig
from ot_ray.config.yaml_files import ConfigDumper, ConfigLoader, dump_config

__all__ = [
    "LANGUAGE_AVERAGES",
    "LOCAL_FILE_BUILDERS",
    "AlignmentConfig",
    "Config",
    "ConfigDumper",
    "ConfigLoader",
    "DataConfig",
    "DemoConfig",
    "EncoderPretraining",
    "LinkNoise",
    "ModelConfig",
    "NLISources",
    "OTConfig",
    "ParallelSources",
    "ParamSpec",
    "QASources",
    "QATrainConfig",
    "SchedulerConfig",
    "SinkhornConfig",
    "SourceSpec",
    "TaskConfig",
    "TaskTrainConfig",
    "TrackingConfig",
    "TrainConfig",
    "TuneConfig",
    "WorldSizes",
    "condition_holds",
    "dump_config",
    "flatten",
    "is_config_key",
    "load_config",
    "load_config_data",
    "parse_override",
    "sampling_order",
    "unknown_metric",
]

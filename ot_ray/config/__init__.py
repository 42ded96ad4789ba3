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
    HUB_KEYS,
    LOCAL_FILE_BUILDERS,
    LOCAL_KEYS,
    PLACEHOLDERS,
    DataConfig,
    DemoConfig,
    EncoderPretraining,
    NLISources,
    ParallelSources,
    QASources,
    SourceSpec,
    WorldSizes,
)
from ot_ray.config.fields import (
    FiniteFloat,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Section,
    Seed,
)
from ot_ray.config.keys import flatten, is_config_key
from ot_ray.config.loading import load_config, load_config_data, parse_override
from ot_ray.config.metric_names import (
    ALIGNMENT_METRICS,
    EVAL_SPLITS,
    LANGUAGE_AVERAGES,
    METRIC_FAMILIES,
    unknown_metric,
)
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
from ot_ray.config.yaml_files import (
    MAX_CONFIG_VALUES,
    NAME_KEY_TAGS,
    REPLACED,
    ConfigDumper,
    ConfigLoader,
    dump_config,
)

__all__ = [
    "ALIGNMENT_METRICS",
    "EVAL_SPLITS",
    "HUB_KEYS",
    "LANGUAGE_AVERAGES",
    "LOCAL_FILE_BUILDERS",
    "LOCAL_KEYS",
    "MAX_CONFIG_VALUES",
    "METRIC_FAMILIES",
    "NAME_KEY_TAGS",
    "PLACEHOLDERS",
    "REPLACED",
    "AlignmentConfig",
    "Config",
    "ConfigDumper",
    "ConfigLoader",
    "DataConfig",
    "DemoConfig",
    "EncoderPretraining",
    "FiniteFloat",
    "LinkNoise",
    "ModelConfig",
    "NLISources",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OTConfig",
    "ParallelSources",
    "ParamSpec",
    "PositiveFloat",
    "PositiveInt",
    "QASources",
    "QATrainConfig",
    "SchedulerConfig",
    "Section",
    "Seed",
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

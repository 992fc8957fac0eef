"""Model families (nn.Modules only) and the model registry.

Importing this package registers every variant; build one with
``create_model("smarties_tiny")`` and describe it with ``model_config(model)``.
"""

from rsfm.models.finetune import FineTuneModel
from rsfm.models.layers.spectral import (
    DEFAULT_SPECTRAL_RANGES,
    SpectralPatchEmbed,
    SpectralRange,
    UnknownWavelengthError,
    patchify,
    range_index,
    unpatchify,
)
from rsfm.models.registry import (
    create_model,
    is_model,
    list_models,
    model_config,
    model_from_config,
    register_model,
    register_to_config,
)
from rsfm.models.smarties import SmartiesEncoder, SmartiesMAE, sincos_pos_embed_2d

__all__ = [
    "DEFAULT_SPECTRAL_RANGES",
    "FineTuneModel",
    "SmartiesEncoder",
    "SmartiesMAE",
    "SpectralPatchEmbed",
    "SpectralRange",
    "UnknownWavelengthError",
    "create_model",
    "is_model",
    "list_models",
    "model_config",
    "model_from_config",
    "patchify",
    "range_index",
    "register_model",
    "register_to_config",
    "sincos_pos_embed_2d",
    "unpatchify",
]

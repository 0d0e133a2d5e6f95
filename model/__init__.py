"""Text pipeline, LSTM network and artifact bundle shared by training and serving.

Importing this package does not import TensorFlow; only building, saving or loading a
model does.
"""

from model.bundle import Bundle, BundleError, BundleManifest, load_bundle, save_bundle
from model.network import NetworkConfig
from model.pipeline import TextPipeline
from model.sequences import SequenceConfig, pad_sequences
from model.text import TextConfig, normalise, tokenise
from model.vocabulary import OOV_INDEX, PAD_INDEX, Vocabulary

__all__ = [
    "OOV_INDEX",
    "PAD_INDEX",
    "Bundle",
    "BundleError",
    "BundleManifest",
    "NetworkConfig",
    "SequenceConfig",
    "TextConfig",
    "TextPipeline",
    "Vocabulary",
    "load_bundle",
    "normalise",
    "pad_sequences",
    "save_bundle",
    "tokenise",
]

"""Datasets: finding audio inputs, tokenizing them into Parquet shards, and decoding them back."""

from codec12.data.inputs import AudioInput, discover_inputs, partition, read_manifest
from codec12.data.tokenize import (
    DetokenizeSummary,
    TokenizeOptions,
    TokenizeSummary,
    detokenize_dataset,
    read_meta,
    read_tokenized,
    shard_paths,
    tokenize_dataset,
)

__all__ = [
    "AudioInput", "DetokenizeSummary", "TokenizeOptions", "TokenizeSummary", "detokenize_dataset",
    "discover_inputs", "partition", "read_manifest", "read_meta", "read_tokenized", "shard_paths",
    "tokenize_dataset",
]

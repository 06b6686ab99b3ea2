"""Datasets: manifests and finding audio inputs, tokenizing them into Parquet shards, and decoding them back."""

from codec12._lazy import lazy_exports

_EXPORTS = {
    "DetokenizeSummary": "codec12.data.detokenize",
    "ManifestRow": "codec12.data.manifest",
    "TokenizeOptions": "codec12.data.tokenize",
    "TokenizeSummary": "codec12.data.tokenize",
    "detokenize_dataset": "codec12.data.detokenize",
    "discover_inputs": "codec12.data.inputs",
    "iter_manifest": "codec12.data.manifest",
    "partition": "codec12.data.inputs",
    "read_manifest": "codec12.data.manifest",
    "read_meta": "codec12.data.dataset_format",
    "read_tokenized": "codec12.data.dataset_format",
    "shard_paths": "codec12.data.dataset_format",
    "tokenize_dataset": "codec12.data.tokenize",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""Checkpoint I/O (and, later, the registry, Hub access and model cards)."""

from hardened.zoo.checkpoint import (
    IntegrityError,
    load_pretrained,
    named_variables,
    read_metadata,
    save_pretrained,
    sha256_file,
    verify_checkpoint,
)

__all__ = ["IntegrityError", "load_pretrained", "named_variables", "read_metadata", "save_pretrained",
           "sha256_file", "verify_checkpoint"]

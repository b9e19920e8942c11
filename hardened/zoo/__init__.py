"""The zoo: checkpoint I/O, the model registry, Hub access (`from_pretrained`, `push_to_hub`)."""

from hardened.zoo.checkpoint import (
    IntegrityError,
    load_pretrained,
    named_variables,
    read_metadata,
    save_pretrained,
    sha256_file,
    verify_checkpoint,
)
from hardened.zoo.hub import (
    HubFallbackWarning,
    apply_view,
    from_pretrained,
    model_cards_dir,
    model_info,
    push_to_hub,
    rebuild_head,
)
from hardened.zoo.registry import HUB_ORG, REGISTRY, get_entry, list_models, resolve_name, validate_registry

__all__ = ["HUB_ORG", "REGISTRY", "HubFallbackWarning", "IntegrityError", "apply_view", "from_pretrained",
           "get_entry", "list_models", "load_pretrained", "model_cards_dir", "model_info", "named_variables",
           "push_to_hub", "read_metadata", "rebuild_head", "resolve_name", "save_pretrained", "sha256_file",
           "validate_registry", "verify_checkpoint"]

"""Adversarial attacks written with keras.ops (backend-specific autodiff lives in _grad.py)."""

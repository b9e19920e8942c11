"""Input checks that turn bad inputs into clear errors before they reach a backend."""

import numpy as np


def check_images(x, input_shape=None, name="images"):
    """Validate a batch of images and return it as float32 numpy.

    Args:
        x: Array-like (N, H, W, C) with float values in [0, 1].
        input_shape: Expected ``(H, W, C)`` (e.g. ``model.input_shape[1:]``);
            ``None`` entries match anything.
        name: What to call the array in error messages.

    Returns:
        ``np.ndarray`` of float32.

    Raises:
        TypeError: non-numeric or integer data (uint8 images must be scaled).
        ValueError: wrong rank or shape, NaN/inf values, values outside [0, 1].
    """
    try:
        arr = np.asarray(x)
    except Exception as err:  # e.g. ragged nested lists
        raise TypeError(f"{name} must be an array of shape (N, H, W, C); got {type(x).__name__} ({err}).") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}.")
    if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
        raise TypeError(
            f"{name} have integer dtype {arr.dtype}; hardened models take float images in [0, 1]. "
            "Convert with x.astype('float32') / 255."
        )
    if arr.ndim != 4:
        raise ValueError(f"{name} must have shape (N, H, W, C) (channels last), got shape {arr.shape}.")
    if input_shape is not None:
        expected = tuple(input_shape)
        if len(expected) != 3 or any(e is not None and e != a for e, a in zip(expected, arr.shape[1:])):
            raise ValueError(
                f"{name} have shape {arr.shape[1:]} per image, the model expects {expected} (H, W, C). "
                "Resize the images or use a model for this input size."
            )
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"{name} contain {bad} NaN or infinite values.")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(
            f"{name} must lie in [0, 1]; found values in [{arr.min():.4g}, {arr.max():.4g}]. "
            "If they are 0-255 pixels, divide by 255; if they are normalised, undo the normalisation "
            "(models normalise internally)."
        )
    return arr

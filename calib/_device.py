"""The torch device a calibration runs on: checked once, at the boundary."""

from __future__ import annotations

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str | torch.device | None, name: str = "device") -> torch.device:
    """The torch device for ``device``, with a clear error when it is not usable here.

    The same rules and messages as :func:`emulators.gp.resolve_device` (calib does not
    import its plug-ins), with two more checks: ``"cuda"`` is resolved to the current CUDA
    device (``"cuda:0"`` unless changed), so that devices compare equal whichever way they
    were named, and a CUDA index must name a visible device.

    Parameters
    ----------
    device : str or torch.device or None
        ``"cpu"``, ``"cuda"`` or ``"cuda:<index>"``; None is the CPU.
    name : str
        The argument's name, for the messages.

    Returns
    -------
    torch.device
        ``cpu`` or ``cuda:<index>``.

    Raises
    ------
    ValueError
        If ``device`` is neither a CPU nor a CUDA device.
    RuntimeError
        If a CUDA device is asked for and CUDA is not available, or the index names a
        device that is not there.
    """
    if device is None:
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{name}: expected 'cpu', 'cuda' or 'cuda:<index>', got {device!r}"
        ) from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{name}: expected 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    if dev.type == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(
            f"{name}={str(device)!r} was asked for but CUDA is not available "
            f"(torch {torch.__version__}); use {name}='cpu'"
        )
    n = torch.cuda.device_count()
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= n:
        raise RuntimeError(
            f"{name}={str(device)!r} was asked for but only {n} CUDA device(s) are visible "
            f"(cuda:0 to cuda:{n - 1})"
        )
    return torch.device("cuda", index)

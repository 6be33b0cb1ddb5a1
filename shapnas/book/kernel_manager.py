"""The Jupyter kernel manager that papermill starts the book's notebooks with.

ipykernel 7.3 and later warn on every start of a kernel whose ZeroMQ sockets use plain TCP ("Kernel is
running over TCP without encryption"), once per executed notebook of ``make book``. Where pyzmq has
CurveZMQ, the manager provisions Curve keys for the kernel (``transport_encryption = "auto"``), which
encrypts the local sockets and removes the warning; elsewhere the default manager is used unchanged.
"""

from __future__ import annotations

from typing import Any

__all__ = ["kernel_manager_options"]


def kernel_manager_options() -> dict[str, Any]:
    """Keyword arguments for ``papermill.execute_notebook`` that choose the kernel manager.

    Returns:
        ``{"kernel_manager_class": <an AsyncKernelManager with transport encryption "auto">}`` when pyzmq
        supports CurveZMQ and the installed jupyter_client knows ``transport_encryption``; ``{}`` otherwise.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum

    if not zmq.has("curve") or "transport_encryption" not in AsyncKernelManager.class_trait_names():
        return {}

    class EncryptedKernelManager(AsyncKernelManager):
        transport_encryption = CaselessStrEnum(["disabled", "auto", "required"], default_value="auto", config=True)

    return {"kernel_manager_class": EncryptedKernelManager}

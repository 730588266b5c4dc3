"""What an app's FastAPI router uses: the caller, its role, the store, NGSI-LD errors.

A route takes the signed-in caller and the tenant's store as dependencies and raises
NGSI-LD errors, which the server answers as ProblemDetails bodies with their status::

    from fastapi import APIRouter, Depends

    from cityos.appkit.http import Caller, ResourceNotFound, get_store, require

    router = APIRouter(tags=["parking"])

    @router.get("/spaces/{space_id}")
    def space(space_id: str, caller: Caller = Depends(require("viewer")),
              store=Depends(get_store)) -> dict:
        ...

The router is mounted at ``/apps/<name>``; it may also offer ``services(store,
settings)``, background services the server starts and stops with itself.
"""

from cityos.core.errors import BadRequestData, Forbidden, NgsiLdError, ResourceNotFound
from cityos.core.tenancy import Caller, get_store, require

__all__ = ["BadRequestData", "Caller", "Forbidden", "NgsiLdError", "ResourceNotFound",
           "get_store", "require"]

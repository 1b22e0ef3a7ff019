"""Errors answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""
from __future__ import annotations

from typing import Any, Optional

from fastapi.responses import JSONResponse

RETRY_AFTER_S = 30


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None, retry_after: Optional[int] = None,
                 **extra: Any):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code, self.extra = status, message, type, param, code, extra
        self.retry_after = retry_after if retry_after is not None else (RETRY_AFTER_S if status == 503 else None)

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code,
                          **self.extra}}

    def response(self) -> JSONResponse:
        headers = {}
        if self.status == 401:
            headers["WWW-Authenticate"] = "Bearer"
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return JSONResponse(self.body(), status_code=self.status, headers=headers or None)

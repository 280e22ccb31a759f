"""Judging one HTTP answer against the contract: status code, content type, and what a wrong
answer most likely means (a missing key, a disabled component)."""

from __future__ import annotations

import httpx

from sizewise_otel.validate.model import Verdict, fail, ok

KEY_FIX = ("pass --api-key with a key of the service's SIZEWISE_API_KEYS (viewer for reads, "
           "admin for the diagnostics)")


def media_type(resp: httpx.Response) -> str:
    return resp.headers.get("content-type", "").split(";")[0].strip().lower()


def is_json(resp: httpx.Response) -> bool:
    mt = media_type(resp)
    return mt == "application/json" or mt.endswith("+json")


def judge(resp: httpx.Response, *, status: int | tuple[int, ...] = 200,
          media: str | tuple[str, ...] = "application/json", disabled_fix: str = "", what: str = "") -> Verdict:
    """``ok`` when the status and media type match; otherwise a fail naming the likely fix."""
    statuses = (status,) if isinstance(status, int) else status
    medias = (media,) if isinstance(media, str) else media
    label = what or f"{resp.request.method} {resp.request.url.path}"
    got = f"{label} answered {resp.status_code} {media_type(resp) or '(no content type)'}"
    if resp.status_code in statuses and media_type(resp) in medias:
        return ok(got, status_code=resp.status_code, content_type=media_type(resp))
    if resp.status_code == 401:
        return fail(got + " (no valid credentials)", KEY_FIX, status_code=401)
    if resp.status_code == 403:
        return fail(got + " (the key's role is too small)", KEY_FIX, status_code=403)
    if resp.status_code in (301, 302, 307, 308):
        return fail(got + f" (redirect to {resp.headers.get('location')})",
                    "serve the route exactly (an APIRouter route, not a mount)", status_code=resp.status_code)
    if resp.status_code == 404 and disabled_fix:
        return fail(got + " (route missing)", disabled_fix, status_code=404)
    if resp.status_code in statuses:
        return fail(got + f"; expected content type {' or '.join(medias)}",
                    "return the documented media type for this route", status_code=resp.status_code)
    return fail(got + f"; expected {' or '.join(map(str, statuses))}",
                disabled_fix or "see the service log for this request", status_code=resp.status_code)

"""The local OpenID Connect provider of `make infra` (infra/oidc/provider.mjs) as a browser
would use it: `sign_in_at_provider` follows an authorization URL through the provider's
development login and consent pages and returns where the provider finally sends the browser
(the client's redirect_uri with `code`, `state` and `iss`, or with `error=access_denied`).

Blocking (stdlib only, its own cookie jar per call, so every call is a fresh browser session);
from async tests call it through `asyncio.to_thread`. The development login form accepts any
login and password: the login becomes the account (infra/oidc/provider.mjs, `accountFor`).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

PROVIDER_URL = os.environ.get("OIDC_URL", "http://127.0.0.1:9400").rstrip("/")

_REDIRECTS = {301, 302, 303, 307, 308}
_MAX_STEPS = 20
_TIMEOUT_S = 10.0


class SignInError(AssertionError):
    """The provider did not lead to the client's redirect_uri as expected."""


def provider_up(timeout: float = 2.0) -> bool:
    """True if the provider at PROVIDER_URL answers its discovery document with its issuer."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{PROVIDER_URL}/.well-known/openid-configuration",
                         timeout=timeout) as response:
            if response.status != 200:
                return False
            document = json.loads(response.read())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("issuer") == PROVIDER_URL


@dataclass
class _Form:
    action: str
    method: str
    fields: list[tuple[str, str, str]] = field(default_factory=list)  # name, type, value


class _Page(HTMLParser):
    """The forms (with their fields), links and text of one HTML page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.links: list[tuple[str, str]] = []  # href, text
        self.text: list[str] = []
        self._link: list[str] | None = None
        self._skipping: str | None = None  # inside <title>, <style> or <script>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag in ("title", "style", "script"):
            self._skipping = tag
        elif tag == "form":
            self.forms.append(_Form(attributes.get("action", ""),
                                    attributes.get("method", "get").lower()))
        elif tag in ("input", "button") and self.forms and "name" in attributes:
            kind = attributes.get("type", "text" if tag == "input" else "submit").lower()
            self.forms[-1].fields.append((attributes["name"], kind, attributes.get("value", "")))
        elif tag == "a" and "href" in attributes:
            self._link = [attributes["href"]]

    def handle_endtag(self, tag: str) -> None:
        if tag == self._skipping:
            self._skipping = None
        elif tag == "a" and self._link is not None:
            self.links.append((self._link[0], "".join(self._link[1:]).strip()))
            self._link = None

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if self._link is not None:
            self._link.append(data)
        if data.strip():
            self.text.append(data.strip())


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # every redirect comes back to _Browser as a response


def _origin(url: str) -> tuple[str, str, int]:
    parts = urllib.parse.urlsplit(url)
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


class _Browser:
    def __init__(self) -> None:
        self.opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirects(),
        )

    def request(self, method: str, url: str,
                form: dict[str, str] | None = None) -> tuple[int, str, str]:
        """(status, Location header or "", body) of one request, redirects not followed."""
        data = None if form is None else urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        try:
            with self.opener.open(request, timeout=_TIMEOUT_S) as response:
                status, headers, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            status, headers, raw = error.code, error.headers, error.read()
        return status, headers.get("Location", ""), raw.decode("utf-8", "replace")


def _page(body: str) -> _Page:
    page = _Page()
    page.feed(body)
    page.close()
    return page


def sign_in_at_provider(authorization_url: str, login: str, password: str = "x",
                        consent: bool = True) -> str:
    """Signs in at the provider as `login` and grants (or, `consent=False`, cancels) the
    consent, starting from the client's authorization URL. Returns the URL the provider
    redirects the browser to on another origin (the client's redirect_uri). The development
    consent page has only a Continue button; `consent=False` follows the "[ Cancel ]" link
    its page layout shows (the interaction's abort endpoint), which ends the request with
    `error=access_denied`."""
    provider = _origin(authorization_url)
    browser = _Browser()
    method, url, form = "GET", authorization_url, None
    trail: list[str] = []
    for _ in range(_MAX_STEPS):
        trail.append(f"{method} {url}")
        status, location, body = browser.request(method, url, form)
        if status in _REDIRECTS:
            if not location:
                raise SignInError(f"{status} without a Location from {url}")
            target = urllib.parse.urljoin(url, location)
            if _origin(target) != provider:
                return target
            method, url, form = "GET", target, None
            continue
        page = _page(body)
        if status != 200 or not page.forms:
            raise SignInError(
                f"the provider answered {status} with no form to fill: "
                f"{' '.join(page.text)[-600:]!r} (steps: {trail})")
        form_ = page.forms[0]
        values = {name: value for name, kind, value in form_.fields
                  if kind in ("hidden", "text", "password", "email")}
        prompt = values.get("prompt")
        if prompt == "login" or "login" in values:
            values.update(login=login, password=password)
        elif prompt == "consent" and not consent:
            aborts = [href for href, _ in page.links if href.rstrip("/").endswith("/abort")]
            if not aborts:
                raise SignInError(f"the consent page at {url} offers no cancel link")
            method, url, form = "GET", urllib.parse.urljoin(url, aborts[0]), None
            continue
        elif prompt != "consent":
            raise SignInError(f"unexpected form at {url}: {form_}")
        action = urllib.parse.urljoin(url, form_.action or url)
        if _origin(action) != provider:
            raise SignInError(f"the form at {url} posts to another origin: {action}")
        method, url, form = form_.method.upper(), action, values
        if method == "GET":
            url = f"{action}?{urllib.parse.urlencode(values)}"
            form = None
    raise SignInError(f"no redirect to the client after {_MAX_STEPS} steps: {trail}")


def get_no_redirect(url: str, cookies: dict[str, str] | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    """(status, headers, body) of a GET whose redirect is returned, not followed, sending
    `cookies` (name -> value) and `headers`."""
    request = urllib.request.Request(url, headers=headers or {})
    if cookies:
        request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())
    try:
        with opener.open(request, timeout=_TIMEOUT_S) as response:
            status, headers, raw = response.status, response.headers, response.read()
            set_cookies = response.headers.get_all("Set-Cookie") or []
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
        set_cookies = error.headers.get_all("Set-Cookie") or []
    answer = dict(headers)
    if set_cookies:
        answer["Set-Cookie"] = "\n".join(set_cookies)
    return status, answer, raw.decode("utf-8", "replace")


def cookies_set(headers: dict[str, str]) -> dict[str, str]:
    """name -> value of the Set-Cookie headers `get_no_redirect` returned."""
    jar: dict[str, str] = {}
    for line in headers.get("Set-Cookie", "").splitlines():
        name, _, rest = line.partition("=")
        if name:
            jar[name.strip()] = rest.split(";", 1)[0]
    return jar


def sign_in_through(gateway_url: str, login: str, provider: str = "local") -> dict[str, Any]:
    """The whole sign-in as a browser makes it: initiate (keeping its cookie), the provider's
    pages as `login`, the callback on the gateway (with the cookie), the one-time code from
    the success page's fragment swapped for `{user, accessToken, refreshToken}`."""
    status, headers, body = get_no_redirect(f"{gateway_url}/api/v1/oauth/initiate/{provider}")
    if status != 200:
        raise SignInError(f"initiate answered {status}: {body}")
    jar = cookies_set(headers)
    back = urllib.parse.urlsplit(sign_in_at_provider(json.loads(body)["authorizationUrl"],
                                                     login))
    status, headers, body = get_no_redirect(f"{gateway_url}{back.path}?{back.query}", jar)
    if status != 302:
        raise SignInError(f"the callback answered {status}: {body}")
    code = headers["Location"].partition("#code=")[2]
    jar.update(cookies_set(headers))  # the code's own cookie: it is good in this browser only
    request = urllib.request.Request(
        f"{gateway_url}/api/v1/oauth/exchange", method="POST",
        data=json.dumps({"code": code}).encode(),
        headers={"Content-Type": "application/json",
                 "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as answer:
        session: dict[str, Any] = json.load(answer)
    return session


if __name__ == "__main__":  # python -m tests.oidc_support [gateway URL] [login]
    import sys

    arguments = sys.argv[1:]
    print(json.dumps(sign_in_through(arguments[0] if arguments else "http://localhost:3000",
                                     arguments[1] if len(arguments) > 1 else "dev@example.com"),
                     indent=2))

// The one-time code arrives in the fragment (#code=...), which no server and no Referer
// ever sees; it is removed from the address bar and history before anything else.
(async function () {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const code = params.get("code");
  history.replaceState(null, "", window.location.pathname);
  const title = document.getElementById("title");
  const status = document.getElementById("status");
  if (!code) {
    title.textContent = "Nothing to sign in with";
    status.textContent = "This page is where a provider sign-in ends; start one from GET /api/v1/oauth/initiate/<provider>.";
    return;
  }
  const answer = await fetch("/api/v1/oauth/exchange", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ code }), credentials: "same-origin", referrerPolicy: "no-referrer",
  });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok) {
    title.textContent = "Sign-in failed";
    status.className = "error";
    status.textContent = body.message || ("HTTP " + answer.status);
    return;
  }
  title.textContent = "Signed in";
  document.getElementById("who").textContent = body.user.email;
  document.getElementById("access").value = body.accessToken;
  document.getElementById("refresh").value = body.refreshToken;
  document.getElementById("tokens").hidden = false;
})();

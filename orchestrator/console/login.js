// Trades the API token for the console's session cookie, then loads the page that asked.
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  const response = await fetch("/console/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: document.getElementById("token").value }),
  });
  if (response.ok) {
    location.reload();
  } else {
    const body = await response.json().catch(() => ({}));
    error.textContent = body.error || `sign-in failed (${response.status})`;
    error.hidden = false;
  }
});

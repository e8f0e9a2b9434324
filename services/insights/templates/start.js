// Sends the token to /login (kept in an HttpOnly cookie), then opens the program's dashboard.
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("error");
  const token = document.getElementById("token").value.trim();
  const response = await fetch("/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  const body = await response.json();
  if (!response.ok) {
    error.textContent = body.detail || "the token was refused";
    return;
  }
  window.location.href = "/dashboard?program=" + encodeURIComponent(body.program_id);
});

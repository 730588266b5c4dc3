// Importing this module makes an app page sign-in only. The page's data needs the
// dashboard's signed-in session (app-page.js reads it from sessionStorage); without
// one, or with one the server no longer accepts, the page shows a "sign in" notice
// linking to the dashboard instead of failing on every request, and the page's own
// script never starts: this module's evaluation does not finish, and an ES module
// runs only once everything it imports has.
import { chooseLanguage, key, t, tenant } from "/web/static/js/app-page.js";

/** True when the server takes the session's key (one request, only with a key). */
async function sessionAccepted() {
  const headers = { Accept: "application/json", Authorization: `Bearer ${key}` };
  if (tenant) headers["NGSILD-Tenant"] = tenant;
  try {
    const response = await fetch("/web/api/me", { headers });
    return response.status !== 401;
  } catch {
    return true; // offline: the page says so itself
  }
}

async function showSignIn(reason) {
  await chooseLanguage("signin.pageTitle");
  const style = document.createElement("link");
  style.rel = "stylesheet";
  style.href = "/web/static/css/sign-in.css";
  document.head.append(style);
  const notice = document.createElement("main");
  notice.id = "sign-in-needed";
  notice.className = "sign-in-needed";
  const text = document.createElement("p");
  text.textContent = t(reason);
  const link = document.createElement("a");
  link.href = "/";
  link.target = "_top"; // inside the dashboard's frame: the whole window signs in
  link.textContent = t("signin.openDashboard");
  notice.append(text, link);
  document.body.replaceChildren(notice);
  document.body.dataset.signIn = "needed";
}

if (!key) {
  await showSignIn("signin.needed");
  await new Promise(() => {}); // the page never starts
} else if (!(await sessionAccepted())) {
  await showSignIn("signin.expired");
  await new Promise(() => {});
}

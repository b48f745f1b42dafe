// quality-gates web: local times, and a gentle refresh of the live panels. No build step.
(function () {
  "use strict";
  const pad = (n) => String(n).padStart(2, "0");

  function localTimes(root) {
    const today = new Date().toDateString();
    root.querySelectorAll("time[datetime]").forEach((el) => {
      const when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      const clock = pad(when.getHours()) + ":" + pad(when.getMinutes());
      const day = when.toDateString() === today ? "" :
        when.toLocaleDateString(undefined, { month: "short", day: "numeric" }) + " ";
      el.textContent = day + clock;
      el.title = when.toString();
    });
  }

  // A panel is left alone while someone is using it: focus inside, or a changed field.
  function busy(section) {
    if (section.contains(document.activeElement) && document.activeElement !== document.body) return true;
    const changed = (el) => el.type === "checkbox" ? el.checked !== el.defaultChecked
      : el.tagName === "SELECT" ? el.selectedIndex !== Math.max(0, Array.from(el.options).findIndex((o) => o.defaultSelected))
      : el.value !== el.defaultValue;
    return Array.from(section.querySelectorAll("input:not([type=hidden]), select, textarea")).some(changed);
  }

  // Timelines stay open or closed as the reader left them.
  function keepOpenState(current, next) {
    const key = (d) => (d.closest("[data-incident]") || {}).dataset?.incident;
    const open = new Map(Array.from(current.querySelectorAll("details")).map((d) => [key(d), d.open]));
    next.querySelectorAll("details").forEach((d) => { if (open.has(key(d))) d.open = open.get(key(d)); });
  }

  let paused = false;
  async function refresh() {
    if (paused || document.hidden) return;
    try {
      const response = await fetch(location.pathname, { credentials: "same-origin" });
      if (response.redirected || !response.ok) { if (response.status === 401 || response.redirected) location.reload(); return; }
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      fresh.querySelectorAll("[data-live][id]").forEach((next) => {
        const current = document.getElementById(next.id);
        if (current && !busy(current)) { keepOpenState(current, next); current.replaceWith(next); localTimes(next); }
      });
      const updated = fresh.getElementById("updated");
      const mine = document.getElementById("updated");
      if (updated && mine) { mine.replaceWith(updated); localTimes(updated.parentNode); }
    } catch (err) { /* the next tick tries again */ }
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    const seconds = Number(document.body.dataset.refresh || 0);
    const pause = document.getElementById("pause");
    if (pause) pause.addEventListener("click", () => {
      paused = !paused;
      pause.textContent = paused ? "Resume auto-refresh" : "Pause auto-refresh";
    });
    if (seconds > 0) setInterval(refresh, seconds * 1000);
  });
})();

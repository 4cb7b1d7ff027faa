// Live status: the table is refreshed from /api/status every two seconds.
(function () {
  var body = document.querySelector("#services tbody");
  if (!body) return;
  function cell(row, cls, value) {
    var td = row.querySelector("." + cls);
    if (td) td.textContent = value === null || value === undefined ? "" : String(value);
  }
  function refresh() {
    fetch("/api/status", { credentials: "same-origin" })
      .then(function (r) { if (r.status === 401) { location.href = "/login"; } return r.json(); })
      .then(function (s) {
        document.getElementById("supervisor").textContent = s.supervisor_pid
          ? "Supervisor pid " + s.supervisor_pid : "The supervisor is not running";
        s.services.forEach(function (svc) {
          var row = body.querySelector('tr[data-service="' + CSS.escape(svc.name) + '"]');
          if (!row) return;
          cell(row, "state", svc.state);
          cell(row, "ready", svc.ready ? "yes" : "no");
          cell(row, "pid", svc.pid);
          cell(row, "uptime", svc.uptime_secs);
          cell(row, "restarts", svc.restarts);
          cell(row, "last_exit", svc.last_exit);
        });
      })
      .catch(function () {});
  }
  setInterval(refresh, 2000);
})();

// The console's only script (no build step; the page works without it, only less
// live): the status table refreshed every two seconds, a task's output followed until
// it ends, a log followed on request, and a question before an upgrade.
(function () {
  var base = document.body.dataset.base || "";

  function getJson(url, then) {
    fetch(url, { credentials: "same-origin" })
      .then(function (r) {
        if (r.status === 401) { location.href = base + "/login"; return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (v) { if (v) then(v); })
      .catch(function () {});
  }

  // Live status.
  var body = document.querySelector("#services tbody");
  if (body) {
    var cell = function (row, cls, value) {
      var td = row.querySelector("." + cls);
      if (td) td.textContent = value === null || value === undefined ? "" : String(value);
    };
    setInterval(function () {
      getJson(base + "/api/status", function (s) {
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
      });
    }, 2000);
  }

  // A task's output, until it has finished.
  var result = document.getElementById("task-result");
  if (result && result.dataset.running === "yes") {
    var out = document.getElementById("task-output");
    var timer = setInterval(function () {
      getJson(result.dataset.task, function (t) {
        out.textContent = t.output;
        result.textContent = t.result;
        if (!t.running) { clearInterval(timer); result.dataset.running = "no"; }
      });
    }, 1000);
  }

  // A log, followed from now on.
  var follow = document.getElementById("follow");
  if (follow) {
    var log = document.getElementById("log");
    var state = document.getElementById("follow-state");
    var source = null;
    follow.addEventListener("click", function () {
      if (source) {
        source.close(); source = null;
        follow.textContent = "Follow"; state.textContent = "";
        return;
      }
      source = new EventSource(follow.dataset.url);
      follow.textContent = "Stop following";
      state.textContent = "following";
      source.onmessage = function (e) {
        log.textContent += e.data + "\n";
        window.scrollTo(0, document.body.scrollHeight);
      };
      source.onerror = function () { state.textContent = "reconnecting…"; };
      source.onopen = function () { state.textContent = "following"; };
    });
  }

  // A question before what cannot be taken back in a click.
  document.querySelectorAll("form.confirm").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.dataset.confirm)) e.preventDefault();
    });
  });
})();

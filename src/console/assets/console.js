// bulkload web console: progressive enhancement only. Without it, sign-in and plain uploads
// work as ordinary forms. With it: drag and drop, upload progress, the result shown when the
// load finishes (polling a JSON endpoint), copy buttons.
(function () {
  "use strict";

  function poll(url, box) {
    var tries = 0;
    function again() {
      tries += 1;
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
        .then(function (s) {
          if (s.state === "done") {
            box.innerHTML = s.html; // server-rendered, escaped markup of our own
            box.setAttribute("data-load", s.load);
          } else if (tries < 600) {
            setTimeout(again, 1000);
          }
        })
        .catch(function () { if (tries < 600) { setTimeout(again, 2000); } });
    }
    again();
  }

  function say(box, text, bad) {
    box.textContent = "";
    var p = document.createElement("p");
    if (bad) { p.className = "error"; }
    p.textContent = text;
    box.appendChild(p);
  }

  function enhanceUpload(form) {
    var input = form.querySelector("input[type=file]");
    var drop = document.getElementById("drop");
    var hint = document.getElementById("drophint");
    var pbox = document.getElementById("progress-box");
    var bar = document.getElementById("progress");
    var out = document.getElementById("outcome");
    if (hint) { hint.hidden = false; }
    if (drop) {
      ["dragenter", "dragover"].forEach(function (ev) {
        drop.addEventListener(ev, function (e) { e.preventDefault(); drop.classList.add("over"); });
      });
      ["dragleave", "drop"].forEach(function (ev) {
        drop.addEventListener(ev, function () { drop.classList.remove("over"); });
      });
      drop.addEventListener("drop", function (e) {
        e.preventDefault();
        if (e.dataTransfer && e.dataTransfer.files.length) { input.files = e.dataTransfer.files; }
      });
    }
    form.addEventListener("submit", function (e) {
      if (!window.FormData || !window.XMLHttpRequest) { return; }
      e.preventDefault();
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      pbox.hidden = false;
      bar.value = 0;
      say(out, "Uploading…");
      xhr.upload.addEventListener("progress", function (ev) {
        if (ev.lengthComputable) { bar.value = Math.round(100 * ev.loaded / ev.total); bar.textContent = bar.value + "%"; }
      });
      xhr.addEventListener("load", function () {
        var body = {};
        try { body = JSON.parse(xhr.responseText); } catch (err) { body = {}; }
        if (xhr.status === 202 && body.status) {
          bar.value = 100;
          say(out, "Uploaded. Waiting for the load to finish…");
          poll(body.status, out);
        } else {
          say(out, body.error || ("The upload was refused (" + xhr.status + ")."), true);
        }
      });
      xhr.addEventListener("error", function () { say(out, "The upload failed: the connection was lost.", true); });
      xhr.send(new FormData(form));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-poll]");
    if (form) { enhanceUpload(form); }
    var waiting = document.querySelector("[data-status]");
    if (waiting) { poll(waiting.getAttribute("data-status"), waiting); }
    Array.prototype.forEach.call(document.querySelectorAll("button[data-copy]"), function (b) {
      if (!navigator.clipboard) { return; }
      b.hidden = false;
      b.addEventListener("click", function () {
        var t = document.getElementById(b.getAttribute("data-copy"));
        if (t) {
          navigator.clipboard.writeText(t.textContent).then(function () { b.textContent = "Copied"; });
        }
      });
    });
  });
})();

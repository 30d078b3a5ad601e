// slurp console: local times, the jobs filter, and the run page's refresh. No library.
"use strict";
(function () {
  function localTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) { return; }
      // In tables and lists a short form, unless the element asks for the long one.
      var inTable = el.getAttribute("data-local") !== "long" && el.closest("td, li") !== null;
      el.textContent = when.toLocaleString(undefined, inTable ? {
        month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
        hourCycle: "h23"
      } : {
        year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
        second: "2-digit", hourCycle: "h23", timeZoneName: "short"
      });
    });
  }

  function filterRows(input) {
    var table = document.querySelector(input.getAttribute("data-filter"));
    if (!table) { return; }
    var needle = input.value.trim().toLowerCase();
    table.querySelectorAll("tbody tr").forEach(function (row) {
      row.hidden = needle !== "" && row.getAttribute("data-search").indexOf(needle) < 0;
    });
  }

  function follow(box) {
    var url = box.getAttribute("data-live-url");
    function poll() {
      fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (answer) {
          if (!answer.ok) { throw new Error("HTTP " + answer.status); }
          return answer.text();
        })
        .then(function (html) {
          box.innerHTML = html;
          localTimes(box);
          var state = box.querySelector(".run-state");
          if (state && state.getAttribute("data-active") === "true") { setTimeout(poll, 1000); }
        })
        .catch(function () { setTimeout(poll, 5000); });
    }
    if (box.getAttribute("data-active") === "true") { setTimeout(poll, 1000); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("input[data-filter]").forEach(function (input) {
      input.addEventListener("input", function () { filterRows(input); });
    });
    document.querySelectorAll("[data-live-url]").forEach(follow);
  });
})();

// Mamoru admin: small progressive enhancements. Every page works without this file; the CSP
// allows no inline script, so all behaviour is attached here from data attributes.
(function () {
  "use strict";

  function typing(target) {
    if (!target || !target.tagName) return false;
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  // Forms that ask before they act: <form data-confirm="Really?">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });

  // Review: a / r / l decide, j / k move to the next / previous match.
  function setupReviewKeys() {
    var root = document.querySelector("[data-review]");
    if (!root) return;
    var busy = false;
    document.addEventListener("keydown", function (event) {
      if (busy || event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
      var key = event.key.toLowerCase();
      var control = root.querySelector('[data-key="' + key + '"]');
      if (!control || control.disabled) return;
      event.preventDefault();
      if (control.tagName.toLowerCase() === "a") {
        window.location.assign(control.href);
        return;
      }
      busy = true;
      root.classList.add("deciding");
      var buttons = root.querySelectorAll("button[data-key]");
      control.form.requestSubmit ? control.form.requestSubmit(control) : control.click();
      for (var i = 0; i < buttons.length; i++) buttons[i].disabled = true;
    });
  }

  // Upload with a progress bar; without script the form posts normally.
  function setupUpload() {
    var form = document.querySelector("form[data-upload]");
    if (!form || !window.FormData || !window.XMLHttpRequest) return;
    var box = form.querySelector("[data-progress]");
    var bar = box && box.querySelector("progress");
    var label = box && box.querySelector("[data-progress-label]");
    var errorBox = document.querySelector("[data-upload-error]");
    var submit = form.querySelector("button[type=submit]");
    var maxBytes = parseInt(form.getAttribute("data-max-bytes") || "0", 10);

    function fail(message) {
      if (box) box.hidden = true;
      if (submit) submit.disabled = false;
      if (errorBox) {
        errorBox.textContent = message;
        errorBox.hidden = false;
        errorBox.scrollIntoView({ block: "center" });
      } else {
        window.alert(message);
      }
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (errorBox) errorBox.hidden = true;
      var input = form.querySelector("input[type=file]");
      var total = 0;
      if (input && input.files) {
        for (var i = 0; i < input.files.length; i++) total += input.files[i].size;
      }
      if (maxBytes && total > maxBytes) {
        fail("The files add up to " + total.toLocaleString() + " bytes, more than the limit of " +
          maxBytes.toLocaleString() + " bytes. Upload fewer files at a time.");
        return;
      }
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", function (e) {
        if (!e.lengthComputable || !bar) return;
        bar.max = e.total;
        bar.value = e.loaded;
        label.textContent = "Uploading… " + Math.round((100 * e.loaded) / e.total) + "%";
      });
      xhr.upload.addEventListener("load", function () {
        if (bar) bar.removeAttribute("value");
        if (label) label.textContent = "Checking and fingerprinting pages…";
      });
      xhr.addEventListener("load", function () {
        var reply = null;
        try { reply = JSON.parse(xhr.responseText); } catch (e) { reply = null; }
        if (xhr.status >= 200 && xhr.status < 300 && reply && reply.redirect) {
          window.location.assign(reply.redirect);
        } else {
          fail((reply && reply.error) || ("The upload failed (HTTP " + xhr.status + ")."));
        }
      });
      xhr.addEventListener("error", function () {
        fail("The upload was interrupted. If the files are large, check the size limit.");
      });
      if (box) box.hidden = false;
      if (submit) submit.disabled = true;
      xhr.send(new FormData(form));
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupReviewKeys();
    setupUpload();
  });
})();

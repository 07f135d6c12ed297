// deskmail console: progressive enhancement only; every page works
// without it. Marks the page as scripted (hides the language form's
// button) and submits the language choice when it changes.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  document.addEventListener("change", function (e) {
    var el = e.target;
    if (el && el.classList && el.classList.contains("autosubmit") && el.form) {
      el.form.submit();
    }
  });
})();

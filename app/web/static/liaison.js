// The minutes form: a button to add another resolution row (the form works without it: three blank rows).
(function () {
  "use strict";
  var box = document.getElementById("resolutions");
  if (!box) { return; }
  var button = document.createElement("button");
  button.type = "button";
  button.textContent = document.documentElement.lang === "en" ? "Add a resolution" : "再加一项议定事项";
  button.addEventListener("click", function () {
    var rows = box.querySelectorAll("fieldset.resolution");
    var last = rows[rows.length - 1];
    var copy = last.cloneNode(true);
    var n = rows.length;
    copy.querySelector("legend").textContent = last.querySelector("legend").textContent.replace(/\d+$/, String(n + 1));
    copy.querySelectorAll("[id]").forEach(function (el) { el.id = el.id.replace(/\d+$/, String(n)); });
    copy.querySelectorAll("label[for]").forEach(function (el) {
      el.htmlFor = el.htmlFor.replace(/\d+$/, String(n));
    });
    copy.querySelectorAll("input").forEach(function (el) { el.value = ""; });
    copy.querySelectorAll("select").forEach(function (el) { el.selectedIndex = 0; });
    box.appendChild(copy);
    copy.querySelector("input").focus();
  });
  box.parentNode.insertBefore(button, box.nextSibling);
}());

// The new-rule form shows the fields its condition uses (each label says
// which in data-conditions); without this script every field shows.
(function () {
  "use strict";
  function sync(select) {
    var form = select.form;
    form.querySelectorAll("label[data-conditions]").forEach(function (label) {
      var wanted = label.dataset.conditions.split(" ").indexOf(select.value) !== -1;
      label.hidden = !wanted;
      label.querySelectorAll("input").forEach(function (input) { input.disabled = !wanted; });
    });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("rule-condition");
    if (!select) return;
    select.addEventListener("change", function () { sync(select); });
    sync(select);
  });
})();
